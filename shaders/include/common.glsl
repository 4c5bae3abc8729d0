// Shared by every kernel: the input load path and the flat invocation index.
//
// Inputs are read through IN_BUFFER/LOAD4 only. The device profile picks the variant
// (see shaders/meson.build): with LOAD_TEXEL an input is a uniform texel buffer of
// RGBA32F read by texelFetch, which lavapipe compiles to straight-line gathers; without
// it, a storage buffer of vec4, the usual path on GPUs. Either way the unit is a vec4,
// so every buffer is padded to 16 bytes and the caller passes a base in vec4s.
#extension GL_GOOGLE_include_directive : require

#ifdef LOAD_TEXEL
#define IN_BUFFER(binding_, name_) \
    layout(set = 0, binding = binding_) uniform samplerBuffer name_;
#define LOAD4(name_, i_) texelFetch(name_, int(i_))
#else
#define IN_BUFFER(binding_, name_) \
    layout(set = 0, binding = binding_, std430) readonly buffer name_##_ssbo { vec4 name_[]; };
#define LOAD4(name_, i_) name_[i_]
#endif

#define OUT_BUFFER(binding_, name_) \
    layout(set = 0, binding = binding_, std430) buffer name_##_ssbo { float name_[]; };
// The same storage seen as vec4s, for outputs whose ranges start at a whole vec4.
#define OUT_BUFFER4(binding_, name_) \
    layout(set = 0, binding = binding_, std430) buffer name_##_ssbo { vec4 name_[]; };

// Workgroup size along x; dispatches are 2-D grids of 1-D workgroups so that more than
// maxComputeWorkGroupCount[0] groups fit (see vka_cmd_dispatch_1d).
layout(constant_id = 0) const uint WG = 64;
layout(local_size_x_id = 0) in;

uint flat_id()
{
    return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * WG;
}

uint flat_group()
{
    return gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
}
