"""TouchDesigner bridge: Script TOP / Script CHOP callbacks that run a cppnviz graph inside TouchDesigner."""
