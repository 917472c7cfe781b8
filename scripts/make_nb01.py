"""Write notebooks/01_dataset_exploration.ipynb (run: python scripts/make_nb01.py [--force])."""

from notebook_builder import main


def md(source: str) -> tuple[str, str]:
    return ("md", source)


def code(source: str) -> tuple[str, str]:
    return ("code", source)


cells = [
    md("""# 01 · Dataset exploration

What a TrackML event looks like, and how the built-in simulator compares with the real TrackML files.

**Inputs**: a simulated dataset (made on demand under `data/sim/` from `pileup`, `n_events`, `seed`) or any
TrackML folder given as `data_dir`; the real samples in `data/real/` (copies of `shared/data/trackml/`: a reduced event with truth,
the full-size hits of event 1001 and the particles of events 1000 and 1001).

**Outputs**: the event statistics table, x-y and r-z views, pT / eta / nhits distributions, the simulator
against the real files (headline numbers and hits per pixel layer), a 3D event display and an event browser."""),
    code("""# parameters: defaults are the quick CI size; params/full.yaml runs the study size
data_dir = ""        # a TrackML folder; empty: simulate (pileup, n_events, seed) under data/sim/
n_events = 2         # events to read (and to simulate)
pileup = 20.0        # mean pile-up interactions of the simulated events
seed = 1             # simulator seed
pixel_only = False   # simulate / read the pixel volumes (7, 8, 9) only
pt_min = 0.9         # GeV: the reconstructable-particle threshold"""),
    code("""import matplotlib.pyplot as plt

import trackstudy as ts
from trackstudy.data import datasets, stats
from trackstudy.plots import events as event_plots
from trackstudy.reports import notebook_setup

notebook_setup()"""),
    md("## The data\nOne row per event: hits, pixel hits, particles, noise fraction, particles with pT above `pt_min` and at least 3 hits."),
    code("""folder = datasets.resolve_data(data_dir, n_events=n_events, pileup=pileup, seed=seed, pixel_only=pixel_only)
summary, layers = stats.inspect_path(folder, n_events)
print(folder)
summary"""),
    code("""events = list(ts.iter_events(folder, n_events=n_events))
event = events[0]
event"""),
    md("## Detector views\nHits of the first event in the transverse (x-y) and longitudinal (r-z) planes, coloured by detector volume."),
    code("""event_plots.plot_views(event.hits)
plt.show()"""),
    md("## Particle spectra\nNormalised distributions of the simulated particles next to the two real full-size TrackML events."),
    code("""real_full = datasets.real_trackml_dir("full")
real_particles = {f"real {p.name.split('-')[0]}": ts.data.io.read_table(p, "particles")
                  for p in sorted(real_full.glob("event*-particles.csv*"))}
event_plots.plot_particle_distributions({"simulated": event.particles, **real_particles})
plt.show()"""),
    md("## Simulator against real TrackML events\nMeans over the simulated events against the real samples (particles: events 1000 and 1001;\nhits: event 1001; noise fraction: the reduced event). At `pileup = 200` the ratios should be close to 1."),
    code("""headline, per_layer = stats.compare_with_real(summary, layers)
headline"""),
    code("""per_layer"""),
    code("""event_plots.plot_hits_per_layer({
    f"simulated (mu={pileup:g})": per_layer.rename(columns={"n_hits_simulated": "n_hits"}),
    "real event 1001": per_layer.rename(columns={"n_hits_real": "n_hits"}),
})
plt.show()"""),
    md("## Event display\nHits in grey, particles above `pt_min` as lines. The browser below re-draws the same figure for another event, threshold or particle."),
    code("""event_plots.event_display_3d(ts.select_volumes(event), pt_min=pt_min).show()"""),
    code("""event_plots.event_browser([ts.select_volumes(e) for e in events], pt_min=pt_min)"""),
]

if __name__ == "__main__":
    # cells[0]: the title, cells[1]: the parameters cell (tagged by the builder)
    main("01_dataset_exploration.ipynb", cells[0][1], cells[1][1], cells[2:])
