from copydata.cli import main

raise SystemExit(main())
