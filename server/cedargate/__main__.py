from cedargate.cli import main

raise SystemExit(main())
