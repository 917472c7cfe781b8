"""TrackML data: reading, validation and writing (io), detector geometry (detector),
the built-in detector simulator (simulate) and the challenge's hit weights (weights)."""
