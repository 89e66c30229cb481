"""Planning and running units: suite -> plan, freshness against the store, the runner and the launchers."""
