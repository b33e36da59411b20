"""``mro-admin``: the operators' command line and its HTTP client."""
