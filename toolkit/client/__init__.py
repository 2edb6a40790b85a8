"""The reference client: runs a bundle on a phone photo the way an app does. ``photo`` reads the photo and
fits it to the network's input; ``overlay`` draws the outputs back onto the photo."""
