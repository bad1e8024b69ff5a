from multisource.cli import main

raise SystemExit(main())
