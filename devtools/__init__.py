"""The launcher's own code (standard library only), one module per job: see manage_all.py."""
