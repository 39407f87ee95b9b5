#!/usr/bin/env python3
"""Fits the rational erf of `Gelu::Erf` (src/layer/nonlinearity.rs): erf(x) ~ x P(x^2) / Q(x^2)
on [0, 4] (P of degree 6, Q of degree 5 with Q(0) = 1), by iteratively reweighted linear least
squares on Chebyshev nodes (the weights push the largest errors down), then checks the f32
Horner evaluation against math.erf on [-5, 5]. Needs numpy: `python3 tools/fit_erf.py`.
Prints the coefficients (as f32) and the max abs error (3.3e-7 when they were made)."""
import numpy as np
from math import erf
np.set_printoptions(precision=17)
X=4.0
# Chebyshev-ish nodes on [0, X]
n=4000
x=(1-np.cos(np.linspace(0,np.pi,n)))/2*X
x=x[x>1e-6]
y=np.array([erf(v) for v in x])
t=x*x
dp,dq=7,6   # P degree in t, Q degree in t (Q[0]=1)
w=np.ones_like(x)
for it in range(30):
    # x*P(t) - y*Q(t) = 0, Q0 = 1 -> unknowns p0..pdp, q1..qdq
    A=np.hstack([np.stack([x*t**k for k in range(dp+1)],1), np.stack([-y*t**k for k in range(1,dq+1)],1)])
    b=y
    c,*_=np.linalg.lstsq(A*w[:,None], b*w, rcond=None)
    p=c[:dp+1]; q=np.concatenate([[1.0],c[dp+1:]])
    Q=np.polyval(q[::-1],t)
    w=1/np.abs(Q)
    approx=x*np.polyval(p[::-1],t)/Q
    err=approx-y
    # emphasize max error (Lawson-ish)
    w=w*(1+np.abs(err)/np.abs(err).max())**4
print("p",list(p)); print("q",list(q))
# evaluate in f32 Horner
pf=p.astype(np.float32); qf=q.astype(np.float32)
xs=np.linspace(-5,5,2000001).astype(np.float32)
xc=np.clip(xs,np.float32(-X),np.float32(X))
tt=xc*xc
P=np.float32(0); 
P=np.zeros_like(tt)+pf[-1]
for c_ in pf[-2::-1]: P=P*tt+c_
Qv=np.zeros_like(tt)+qf[-1]
for c_ in qf[-2::-1]: Qv=Qv*tt+c_
e=(xc*P/Qv).astype(np.float32)
e=np.clip(e,-1,1)
ref=np.array([erf(float(v)) for v in xs[::20]])
print("max abs err f32:", np.abs(e[::20]-ref).max())
print(repr(pf.tolist())); print(repr(qf.tolist()))
