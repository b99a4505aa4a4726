"""OSC for live shows: param control from controllers, feature output, OSCQuery discovery."""
