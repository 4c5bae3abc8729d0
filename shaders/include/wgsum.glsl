// The workgroup's sums of vec4s by a fixed tree (norm.comp, loss.comp): every sum of a
// kernel adds the same pairs in the same order on every run and device.

shared vec4 red[2u * WG];

// The sum of u (and with two, of v) over the workgroup; every invocation gets it. Two sums
// share the tree's barriers (on lavapipe each barrier switches every invocation's
// coroutine: norm_gradsum took 0.70x the time with its two sums in one tree); `two` is a
// constant at every call, so the inlined code keeps only what it uses.
void wg_sum(inout vec4 u, inout vec4 v, bool two)
{
    uint t = gl_LocalInvocationID.x;
    red[t] = u;
    if (two)
        red[WG + t] = v;
    barrier();
    for (uint h = WG / 2u; h > 0u; h >>= 1u) {
        if (t < h) {
            red[t] += red[t + h];
            if (two)
                red[WG + t] += red[WG + t + h];
        }
        barrier();
    }
    u = red[0];
    if (two)
        v = red[WG];
    barrier(); // red is written again by the next call
}

// The sum of v over the workgroup
vec4 wg_sum1(vec4 v)
{
    vec4 unused = vec4(0.0);
    wg_sum(v, unused, false);
    return v;
}
