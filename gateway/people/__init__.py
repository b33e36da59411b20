"""People as the gateway administers them: profile fields, user administration bodies and rules."""
