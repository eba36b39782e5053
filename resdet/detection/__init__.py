"""Engine-neutral detection: what decides a result, once, below both engine adapters."""
