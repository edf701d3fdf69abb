from evcp.cli import main

raise SystemExit(main())
