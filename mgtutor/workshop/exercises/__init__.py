"""The exercises of the notebooks, one module a notebook: each registers its exercises with
:func:`mgtutor.workshop.check.register` when imported (``check.EXERCISE_MODULES`` lists the modules).

- `discretisation` (notebook 01): ZOH for a diagonal A, the SSM kernel, the causal FFT convolution
- `selective_scan` (notebook 02): the scan's recurrence, the reverse recurrence of its backward
- `mamba_block` (notebook 03): the causal depthwise convolution, the skip and the gate
- `mamba_mhsa` (notebook 04): the residual Mamba stream, the scan in segment-centre order
- `windows` (notebook 05): the original frame a sampled frame shows, a gesture's window coordinates, the cut
  into sliding windows
- `i3d` (notebook 06): TensorFlow's "SAME" padding, I3D's Unit3D
- `query_points` (notebook 07): eq. 1's point refinement, one deformable-sampling read, the frame mix
- `set_prediction` (notebook 08): the matching cost, the class term of the loss
- `challenge_f1` (notebook 09): the organisers' overlap, their walk over a sequence, the micro-aggregated F1
"""
