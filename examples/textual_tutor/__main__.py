"""``python -m examples.textual_tutor`` (from the repository root): run the terminal lesson."""

import sys

if __package__:
    from .tutor import main
else:  # `python examples/textual_tutor`: make the package importable first
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from examples.textual_tutor.tutor import main

sys.exit(main())
