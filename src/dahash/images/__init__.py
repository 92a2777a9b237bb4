"""Image domains for DAH: folder trees and image lists, decoding to RGB, backbones and feature extraction."""
