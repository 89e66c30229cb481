"""The VTP network: vision trunk, pixel decoder, text tower, with official key names."""
