from botlite.cli import main

raise SystemExit(main())
