"""Numba kernel of the simulator: helix propagation through the TrackML modules.

Kept apart from :mod:`trackstudy.data.simulate` so that the pure-Python parts import
without compiling. numba is used because the propagation is a per-particle loop over
surface crossings whose length depends on the particle (loopers, endcaps, early stops):
vectorising it in numpy would mean masking over the longest particle at every step.

Conventions: mm, GeV, tesla. The field is B along +z; a particle of charge q and
transverse momentum pT turns with signed curvature kappa = -q * 0.299792458e-3 * B / pT
(1/mm), i.e. a positive particle turns clockwise seen from +z. State of a particle: position
(x, y, z), unit transverse direction (ux, uy), dz/ds (s = transverse path length) and pT.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

C_LIGHT_MM = 0.299792458e-3  # GeV / (T mm)
SI_X0_MM = 93.7              # radiation length of silicon (mm)
SI_DEDX_GEV_MM = 0.000388    # mean dE/dx of a minimum-ionising particle in silicon (GeV/mm)
PION_MASS = 0.13957


@njit(cache=True, inline="always")
def _helix_pos(x, y, z, ux, uy, tz, kappa, s):
    """Position after a transverse path s along the helix."""
    a = kappa * s
    if abs(a) < 1e-7:
        sa = s
        ca = 0.5 * a * s
    else:
        sa = math.sin(a) / kappa
        ca = (1.0 - math.cos(a)) / kappa
    return x + ux * sa - uy * ca, y + uy * sa + ux * ca, z + tz * s


@njit(cache=True, inline="always")
def _helix_dir(ux, uy, kappa, s):
    a = kappa * s
    c = math.cos(a)
    sn = math.sin(a)
    return ux * c - uy * sn, uy * c + ux * sn


@njit(cache=True)
def highland_theta0(p, mass, xx0):
    """RMS plane scattering angle (rad) of a unit-charge particle of momentum p (GeV) and mass
    (GeV) crossing xx0 radiation lengths (PDG Highland formula)."""
    if xx0 <= 0.0:
        return 0.0
    beta = p / math.sqrt(p * p + mass * mass)
    return 0.0136 / (beta * p) * math.sqrt(xx0) * (1.0 + 0.038 * math.log(xx0 / (beta * beta)))


@njit(cache=True)
def _cylinder_s(x, y, ux, uy, kappa, radius, eps):
    """Smallest transverse path s > eps at which the helix reaches r = radius; -1 if never."""
    if abs(kappa) < 1e-12:
        # straight line: |p + s u|^2 = R^2
        b = x * ux + y * uy
        c = x * x + y * y - radius * radius
        disc = b * b - c
        if disc < 0.0:
            return -1.0
        sq = math.sqrt(disc)
        s1 = -b - sq
        s2 = -b + sq
        if s1 > eps:
            return s1
        if s2 > eps:
            return s2
        return -1.0
    rho = 1.0 / abs(kappa)
    # centre of the transverse circle
    xc = x - uy / kappa
    yc = y + ux / kappa
    d = math.hypot(xc, yc)
    if d > rho + radius or d < abs(rho - radius) or d < 1e-9:
        return -1.0
    # intersection points of circle (0, radius) and circle (c, rho)
    a = (radius * radius - rho * rho + d * d) / (2.0 * d)
    h2 = radius * radius - a * a
    h = math.sqrt(h2) if h2 > 0.0 else 0.0
    ex = xc / d
    ey = yc / d
    th0 = math.atan2(y - yc, x - xc)
    sgn = 1.0 if kappa > 0 else -1.0
    best = -1.0
    for k in range(2):
        hh = h if k == 0 else -h
        px = a * ex - hh * ey
        py = a * ey + hh * ex
        th = math.atan2(py - yc, px - xc)
        dth = (th - th0) * sgn
        dth = dth % (2.0 * math.pi)
        s = dth * rho
        if s <= eps:
            s += 2.0 * math.pi * rho
        if best < 0.0 or s < best:
            best = s
    return best


@njit(cache=True)
def propagate(x0, y0, z0, px0, py0, pz0, q, rnd_n, rnd_u,
              lay_type, lay_r, lay_z, lay_lo, lay_hi, lay_nphi, lay_nq, lay_q0, lay_q1, lay_cell0,
              cell_ptr, cell_mod, mod_c, mod_rot, mod_hu0, mod_hu1, mod_hv, mod_xx0, mod_tmat,
              b_field, max_turn, inefficiency, mod_pint, max_path, mass, capacity):
    """Propagate every particle; return (n_hits, particle index, module row, true x y z,
    true px py pz, local u v, hit order within the particle) with n_hits = -1 on overflow.

    rnd_n: (n, K, 2) standard normals (multiple scattering), rnd_u: (n, K, 2) uniforms
    (inefficiency, nuclear interaction); K bounds the module crossings of one particle.
    mod_pint: per module, the probability per mm of its effective material that a particle stops there.
    max_path: no hit where the path in the sensor exceeds max_path x its thickness
    (grazing incidence; the particle still crosses the material).
    """
    n = x0.shape[0]
    kmax = rnd_n.shape[1]
    n_layers = lay_type.shape[0]
    out_p = np.empty(capacity, np.int32)
    out_m = np.empty(capacity, np.int32)
    out_x = np.empty((capacity, 3), np.float64)
    out_mom = np.empty((capacity, 3), np.float64)
    out_uv = np.empty((capacity, 2), np.float64)
    out_k = np.empty(capacity, np.int32)
    nh = 0
    eps = 1e-3
    cand_s = np.empty(64, np.float64)
    cand_m = np.empty(64, np.int32)
    cand_u = np.empty(64, np.float64)
    cand_v = np.empty(64, np.float64)
    for i in range(n):
        if q[i] == 0:
            continue
        x = x0[i]
        y = y0[i]
        z = z0[i]
        pt = math.hypot(px0[i], py0[i])
        if pt < 1e-6:
            continue
        ux = px0[i] / pt
        uy = py0[i] / pt
        tz = pz0[i] / pt
        turned = 0.0
        k = 0
        alive = True
        steps = 0
        while alive and steps < 1000:
            steps += 1
            kappa = -q[i] * C_LIGHT_MM * b_field / pt
            s_lim = 1e18
            if abs(kappa) > 0.0:
                s_lim = (max_turn - turned) / abs(kappa)
                if s_lim <= eps:
                    break
            # next layer surface along the helix
            best_s = -1.0
            best_l = -1
            for l in range(n_layers):
                if lay_type[l] == 0:
                    s = _cylinder_s(x, y, ux, uy, kappa, lay_r[l], eps)
                    if s < 0.0:
                        continue
                    zz = z + tz * s
                    if zz < lay_lo[l] or zz > lay_hi[l]:
                        continue
                else:
                    if tz == 0.0:
                        continue
                    s = (lay_z[l] - z) / tz
                    if s <= eps:
                        continue
                    if best_s >= 0.0 and s >= best_s:
                        continue
                    hx, hy, hz = _helix_pos(x, y, z, ux, uy, tz, kappa, s)
                    rr = math.hypot(hx, hy)
                    if rr < lay_lo[l] or rr > lay_hi[l]:
                        continue
                if s > s_lim:
                    continue
                if best_s < 0.0 or s < best_s:
                    best_s = s
                    best_l = l
            if best_l < 0:
                break
            l = best_l
            sx, sy, sz = _helix_pos(x, y, z, ux, uy, tz, kappa, best_s)
            # candidate modules from the layer's (phi, z|r) lookup
            ph = math.atan2(sy, sx)
            qv = sz if lay_type[l] == 0 else math.hypot(sx, sy)
            nphi = lay_nphi[l]
            nq = lay_nq[l]
            ip = int((ph + math.pi) / (2.0 * math.pi) * nphi)
            if ip >= nphi:
                ip = nphi - 1
            iq = int((qv - lay_q0[l]) / (lay_q1[l] - lay_q0[l]) * nq)
            if iq < 0:
                iq = 0
            if iq >= nq:
                iq = nq - 1
            cell = lay_cell0[l] + ip * nq + iq
            nc = 0
            for j in range(cell_ptr[cell], cell_ptr[cell + 1]):
                m = cell_mod[j]
                nx = mod_rot[m, 2]
                ny = mod_rot[m, 5]
                nz = mod_rot[m, 8]
                cx = mod_c[m, 0]
                cy = mod_c[m, 1]
                cz = mod_c[m, 2]
                s = best_s
                ok = False
                for _ in range(6):
                    hx, hy, hz = _helix_pos(x, y, z, ux, uy, tz, kappa, s)
                    f = nx * (hx - cx) + ny * (hy - cy) + nz * (hz - cz)
                    dx, dy = _helix_dir(ux, uy, kappa, s)
                    fp = nx * dx + ny * dy + nz * tz
                    if abs(fp) < 1e-9:
                        break
                    ds = -f / fp
                    s += ds
                    if abs(ds) < 1e-6:
                        ok = True
                        break
                if not ok or s <= eps or s > s_lim or abs(s - best_s) > 100.0:
                    continue
                hx, hy, hz = _helix_pos(x, y, z, ux, uy, tz, kappa, s)
                ddx = hx - cx
                ddy = hy - cy
                ddz = hz - cz
                u = mod_rot[m, 0] * ddx + mod_rot[m, 3] * ddy + mod_rot[m, 6] * ddz
                v = mod_rot[m, 1] * ddx + mod_rot[m, 4] * ddy + mod_rot[m, 7] * ddz
                hv = mod_hv[m]
                if abs(v) > hv:
                    continue
                hu = mod_hu0[m] + (mod_hu1[m] - mod_hu0[m]) * (v + hv) / (2.0 * hv)
                if abs(u) > hu:
                    continue
                if nc < 64:
                    cand_s[nc] = s
                    cand_m[nc] = m
                    cand_u[nc] = u
                    cand_v[nc] = v
                    nc += 1
            # order the crossed modules along the path (insertion sort: a handful at most)
            for a in range(1, nc):
                j = a
                while j > 0 and cand_s[j - 1] > cand_s[j]:
                    cand_s[j - 1], cand_s[j] = cand_s[j], cand_s[j - 1]
                    cand_m[j - 1], cand_m[j] = cand_m[j], cand_m[j - 1]
                    cand_u[j - 1], cand_u[j] = cand_u[j], cand_u[j - 1]
                    cand_v[j - 1], cand_v[j] = cand_v[j], cand_v[j - 1]
                    j -= 1
            s_end = best_s
            if nc > 0 and cand_s[nc - 1] > s_end:
                s_end = cand_s[nc - 1]
            # momentum direction (3-D unit) and magnitude at the end of this layer, scattered
            p = pt * math.sqrt(1.0 + tz * tz)
            stop = False
            dxe, dye = _helix_dir(ux, uy, kappa, s_end)
            norm = math.sqrt(1.0 + tz * tz)
            d0 = dxe / norm
            d1 = dye / norm
            d2 = tz / norm
            for a in range(nc):
                if k >= kmax:
                    stop = True
                    break
                s = cand_s[a]
                m = cand_m[a]
                hx, hy, hz = _helix_pos(x, y, z, ux, uy, tz, kappa, s)
                hdx, hdy = _helix_dir(ux, uy, kappa, s)
                cos_hit = abs(mod_rot[m, 2] * hdx + mod_rot[m, 5] * hdy + mod_rot[m, 8] * tz) / norm
                if rnd_u[i, k, 0] >= inefficiency and cos_hit * max_path >= 1.0:
                    if nh >= capacity:
                        return -1, out_p, out_m, out_x, out_mom, out_uv, out_k
                    out_p[nh] = i
                    out_m[nh] = m
                    out_x[nh, 0] = hx
                    out_x[nh, 1] = hy
                    out_x[nh, 2] = hz
                    out_mom[nh, 0] = p * hdx / norm
                    out_mom[nh, 1] = p * hdy / norm
                    out_mom[nh, 2] = p * tz / norm
                    out_uv[nh, 0] = cand_u[a]
                    out_uv[nh, 1] = cand_v[a]
                    out_k[nh] = k
                    nh += 1
                # material: Highland multiple scattering and mean ionisation loss
                cosi = abs(mod_rot[m, 2] * d0 + mod_rot[m, 5] * d1 + mod_rot[m, 8] * d2)
                if cosi < 0.05:
                    cosi = 0.05
                xx0 = mod_xx0[m] / cosi
                e = math.sqrt(p * p + mass * mass)
                theta0 = highland_theta0(p, mass, xx0)
                if theta0 > 0.0:
                    # two axes perpendicular to the direction
                    e1x = d1
                    e1y = -d0
                    e1z = 0.0
                    nrm = math.hypot(e1x, e1y)
                    if nrm < 1e-9:
                        e1x, e1y, nrm = 1.0, 0.0, 1.0
                    e1x /= nrm
                    e1y /= nrm
                    e2x = d1 * e1z - d2 * e1y
                    e2y = d2 * e1x - d0 * e1z
                    e2z = d0 * e1y - d1 * e1x
                    a1 = theta0 * rnd_n[i, k, 0]
                    a2 = theta0 * rnd_n[i, k, 1]
                    d0 += a1 * e1x + a2 * e2x
                    d1 += a1 * e1y + a2 * e2y
                    d2 += a1 * e1z + a2 * e2z
                    nrm = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
                    d0 /= nrm
                    d1 /= nrm
                    d2 /= nrm
                e -= SI_DEDX_GEV_MM * mod_tmat[m] / cosi
                if e <= mass * 1.0001:
                    stop = True
                    k += 1
                    break
                p = math.sqrt(e * e - mass * mass)
                if rnd_u[i, k, 1] < mod_pint[m] * mod_tmat[m] / cosi:
                    stop = True
                    k += 1
                    break
                k += 1
            if stop:
                break
            # move to the end of the layer with the scattered momentum
            x, y, z = _helix_pos(x, y, z, ux, uy, tz, kappa, s_end)
            turned += abs(kappa) * s_end
            ptn = p * math.hypot(d0, d1)
            if ptn < 1e-4:
                break
            pt = ptn
            nt = math.hypot(d0, d1)
            ux = d0 / nt
            uy = d1 / nt
            tz = d2 / nt
    return nh, out_p, out_m, out_x, out_mom, out_uv, out_k
