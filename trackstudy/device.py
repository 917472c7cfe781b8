"""Where tensors live and in which precision the models run.

``resolve_device("auto")`` picks CUDA, then Apple MPS, then the CPU. ``autocast_context`` gives
bfloat16 autocast on CUDA (the precision the seed papers trained in on A100s) and a null
context everywhere else, so the same training loop runs unchanged on a laptop.
"""

from __future__ import annotations

import contextlib
import time
import warnings

import torch

from trackstudy.errors import ConfigError

#: Names accepted by :func:`resolve_device` besides explicit torch device strings.
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device for ``device``: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda",
    "cuda:1", "mps", or a ``torch.device``. Raises ConfigError for an unknown name or an
    accelerator that this machine does not have."""
    if isinstance(device, torch.device):
        spec = str(device)
    elif device is None:
        spec = "auto"
    elif isinstance(device, str):
        spec = device.strip().lower()
    else:
        raise ConfigError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}")
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device: unknown device {device!r}; use one of {', '.join(DEVICE_CHOICES)} "
                          "or e.g. 'cuda:0'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r}: CUDA is not available on this machine (use 'auto' or 'cpu')")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type == "mps":
        if not _mps_available():
            raise ConfigError(f"device={device!r}: Apple MPS is not available on this machine (use 'auto' or 'cpu')")
    elif dev.type != "cpu":
        raise ConfigError(f"device: unsupported device type {dev.type!r}; use one of {', '.join(DEVICE_CHOICES)}")
    return dev


def autocast_dtype(device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype used on ``device``: bfloat16 on CUDA, None (full float32) elsewhere."""
    dev = resolve_device(device)
    return torch.bfloat16 if dev.type == "cuda" else None


def autocast_context(device: str | torch.device, enabled: bool = True):
    """A context manager running the forward pass in bfloat16 autocast on CUDA; a null context
    on CPU/MPS or when ``enabled`` is False (CPU autocast would only slow the study down)."""
    dev = resolve_device(device)
    dtype = autocast_dtype(dev)
    if not enabled or dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=dtype)


def synchronize(device: str | torch.device) -> None:
    """Wait for queued kernels on ``device`` (needed before reading a wall clock)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


def describe_device(device: str | torch.device) -> str:
    """One line naming the device, e.g. 'cuda:0 (NVIDIA H100 80GB HBM3)' or 'cpu (2 threads)'."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if dev.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(dev)


@contextlib.contextmanager
def quiet_torch_compile():
    """Silence torch's own deprecation warnings raised while it imports/compiles inductor
    (they are torch-internal, not ours, and tests turn warnings into errors)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch(\..*)?$")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch(\..*)?$")
        yield
class StageClock:
    """Times named stages on ``device`` (default: the best one here): ``with clock("encoder"): ...``.

    The device is synchronised before and after each stage, so every stage owns the kernels it
    queued. On CUDA the stage time comes from CUDA events recorded at the two boundaries; elsewhere
    from ``time.perf_counter``. ``clock.seconds`` maps stage name -> seconds (summed if repeated).
    """

    def __init__(self, device: str | torch.device | None = None):
        self.device = resolve_device(device or "auto")
        self.seconds: dict[str, float] = {}
        self._cuda = self.device.type == "cuda"

    @contextlib.contextmanager
    def __call__(self, name: str):
        synchronize(self.device)
        if self._cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self._cuda:
                end.record()
                end.synchronize()
                dt = start.elapsed_time(end) / 1e3  # ms -> s
            else:
                synchronize(self.device)
                dt = time.perf_counter() - t0
            self.seconds[name] = self.seconds.get(name, 0.0) + dt


