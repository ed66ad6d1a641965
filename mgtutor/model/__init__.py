"""mgtutor.model"""
