"""The launcher's own code (standard library only): local servers, process supervision."""
