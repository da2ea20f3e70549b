"""``python -m moeaudio``: the same CLI as the ``moeaudio`` console script."""

from moeaudio.cli import main

if __name__ == "__main__":
    main()
