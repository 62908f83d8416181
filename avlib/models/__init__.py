"""Models of the paper: the fused multisensory network, the separation U-Net, I3D."""
