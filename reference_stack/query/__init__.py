"""Query role: the search API, its filters and SQL, the explore routes and the live tail."""
