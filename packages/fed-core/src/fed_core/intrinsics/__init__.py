"""The intrinsics of fed's federated language: one definition per intrinsic (`definitions`), and the
local implementations of fed's own (`local`)."""
