"""The request's edge: its id, client address, header/path/body limits, CORS, security headers."""
