"""``python -m examples.kivy_lesson`` (from the repository root): run the touch lesson."""

import sys

if __package__:
    from .lesson import main
else:  # `python examples/kivy_lesson`: make the package importable first
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from examples.kivy_lesson.lesson import main

sys.exit(main())
