// ReLU and LeakyReLU, forward and backward, for act.comp's own ops and for the norms that
// apply them to their output (norm.comp with ACT): one expression each, so a norm with
// its activation gives the bits of the two ops. The backward takes its mask from y > 0,
// act.comp's the forward's output, the norms' the value they activated, computed again
// (with slope >= 0, act(x) > 0 exactly where x > 0).

vec4 relu_fwd(vec4 x)
{
    return mix(vec4(0.0), x, greaterThan(x, vec4(0.0)));
}

vec4 leaky_relu_fwd(vec4 x, float slope)
{
    return mix(slope * x, x, greaterThan(x, vec4(0.0)));
}

vec4 relu_bwd(vec4 y, vec4 dy)
{
    return mix(vec4(0.0), dy, greaterThan(y, vec4(0.0)));
}

vec4 leaky_relu_bwd(vec4 y, vec4 dy, float slope)
{
    return mix(slope * dy, dy, greaterThan(y, vec4(0.0)));
}
