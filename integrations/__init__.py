"""Framework integrations for oglogstream (Django middleware, Flask extension)."""
