/* The health probe: clconv builds and runs this once per device and process
 * before it lists or uses the device. It exercises what every real kernel
 * relies on (the build options, __local memory and a barrier, float8 vector
 * loads, integer indexing); the host checks every number it writes.
 *
 *   b[i] = 2 * a[reversed position of i in its work-group]
 *        + a[first of i's 8-vector] + a[last of i's 8-vector] + i
 */

__kernel void probe(__global const float *a, __global float *b, __local float *tile) {
    const int i = (int)get_global_id(0);
    const int l = (int)get_local_id(0);
    const int n = (int)get_local_size(0);
    tile[l] = a[i];
    barrier(CLK_LOCAL_MEM_FENCE);
    const float8 v = vload8(i / 8, a);
    b[i] = tile[n - 1 - l] * 2.0f + (v.s0 + v.s7) + (float)i;
}
