"""``python -m streamer``: the same as the ``streamer`` command."""

from .cli import main

if __name__ == "__main__":  # not when a spawned helper process imports this module (shards.py)
    raise SystemExit(main())
