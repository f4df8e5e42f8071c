from m365sync.cli import main

raise SystemExit(main())
