"""Models: the layer factory, blocks, architectures and the builder."""
