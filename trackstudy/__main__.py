import sys

try:
    from trackstudy.cli import main

    status = main()
except KeyboardInterrupt:  # before main's own handler is in place (imports, argument parsing)
    print("trackstudy: interrupted", file=sys.stderr)
    status = 130
sys.exit(status)
