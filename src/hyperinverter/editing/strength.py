"""What ``--strength`` means (no torch here: the command line builds its help text from it)."""

#: What ``--strength`` means, the same in ``hyperinverter edit``, ``demo`` and the web page's sliders.
STRENGTH_HELP = ("edit strength in units of each direction's own default step (the 'strength' recorded with it: "
                 "two standard deviations of the codes for the portrait directions, 3 for the official "
                 "InterFaceGAN ones, 1 for unit normals from 'directions fit' and for bare vector files such as "
                 "an .npy boundary): w moves by "
                 "strength x step x direction on the direction's layers; 1 is its recommended edit, -1 the "
                 "opposite one, 0 changes nothing")
