"""``python -m examples.pygame_game`` (from the repository root): play the fractions game."""

import sys

if __package__:
    from .game import main
else:  # `python examples/pygame_game`: make the package importable first
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from examples.pygame_game.game import main

sys.exit(main())
