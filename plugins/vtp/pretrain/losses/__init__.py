"""The stage-1 losses, one small module each."""
