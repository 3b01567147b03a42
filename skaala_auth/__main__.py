"""``python -m skaala_auth``: the same command line as ``skaala-auth``."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
