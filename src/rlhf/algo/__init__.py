"""Pure tensor math for RLHF. Imports torch only; never mutates its inputs."""
