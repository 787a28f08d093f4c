"""``python -m deepbelief`` runs the command line."""

from deepbelief.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
