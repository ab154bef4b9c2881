"""Reports people read: retro-tests for partners (HTML with PNG plots)."""
