"""``python -m examples.kiosk_app`` (from the repository root): run the kiosk."""

import sys

if __package__:
    from .app import main
else:  # `python examples/kiosk_app`: make the package importable first
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from examples.kiosk_app.app import main

sys.exit(main())
