"""``python -m art_smoothing``: the same command line as the ``art-smoothing`` console script."""

from art_smoothing.cli import main

if __name__ == "__main__":
    main()
