"""Bad input: a clear InputError naming the argument and the value found, before any JAX trace."""

import numpy as np
import pytest

import mdhess

R4 = np.array([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0], [0.0, 1.2, 0.0], [0.0, 0.0, 1.3]])
LJ = mdhess.lennard_jones(cutoff=2.5)
KA = mdhess.lennard_jones(sigma=[[1.0, 0.8], [0.8, 0.88]], epsilon=[[1.0, 1.5], [1.5, 0.5]], cutoff=2.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"positions": np.zeros((4, 2))}, r"positions=\.\.\.\) expects shape \(n_atoms, 3\); got \(4, 2\)"),
        ({"positions": np.zeros(12)}, r"expects shape \(n_atoms, 3\); got \(12,\)"),
        ({"positions": [[0, 0, 0], [1, 1, float("nan")]]}, r"non-finite coordinates at atom 1"),
        ({"positions": [[0.0, 0.0, 0.0]]}, r"at least 2 atom"),
        ({"positions": "abc"}, r"positions=\.\.\.\) must be a numeric"),
        ({"positions": np.vstack([R4, R4[2]])}, r"interacting atoms 2 and 4 at the same position"),
        ({"box": [[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1.0]]}, r"box=\.\.\.\) is singular"),
        ({"box": np.ones((2, 2))}, r"box=\.\.\.\) must be None, a scalar, \(3,\) edge lengths or a \(3, 3\) cell"),
        ({"box": [5.0, -1.0, 5.0]}, r"edge lengths must be finite and > 0; got \[5.0, -1.0, 5.0\]"),
        ({"format": "csr"}, r"format=\.\.\.\) must be one of \('dense', 'bsr'\); got 'csr'"),
        ({"method": "fd"}, r"method=\.\.\.\) must be one of \('pair', 'ad'\); got 'fd'"),
        ({"dtype": "int32"}, r"dtype=\.\.\.\) must be float32 or float64; got int32"),
    ],
)
def test_hessian_bad_input(kwargs, match):
    args = {"positions": R4, "box": None, **kwargs}
    with pytest.raises(mdhess.InputError, match=match):
        mdhess.hessian(LJ, args.pop("positions"), **args)


def test_periodic_box_without_cutoff():
    with pytest.raises(mdhess.InputError, match=r"box=\.\.\.\) is periodic but the potential \(lennard_jones\) has no cutoff"):
        mdhess.hessian(mdhess.lennard_jones(), R4, box=10.0)


def test_coincident_image_names_the_shift():
    R = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    with pytest.raises(mdhess.InputError, match=r"atoms 0 and 1 at the same position \(image shift"):
        mdhess.energy(LJ, R, box=[5.0, 6.0, 6.0])


@pytest.mark.parametrize(
    "species,match",
    [
        (np.zeros(3, int), r"species=\.\.\.\) expects shape \(4,\) \(one per atom\); got \(3,\)"),
        (np.array([0, 1, 2, 0]), r"species=\.\.\.\) value 2 at atom 2 is outside the potential's parameter table \(species 0\.\.1\)"),
        (np.array([0, -1, 0, 0]), r"value -1 at atom 1"),
        (np.array([0, 0.5, 0, 0]), r"must be integers"),
    ],
)
def test_species_bad_input(species, match):
    with pytest.raises(mdhess.InputError, match=match):
        mdhess.forces(KA, R4, species=species)


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: mdhess.lennard_jones(cutoff=0.0), r"lennard_jones\(cutoff=\.\.\.\) must be > 0; got 0.0"),
        (lambda: mdhess.lennard_jones(cutoff=-1.0), r"must be > 0; got -1.0"),
        (lambda: mdhess.lennard_jones(sigma=np.ones((2, 3))), r"sigma=\.\.\.\) must be a scalar or a square \(S, S\) table.*got shape \(2, 3\)"),
        (lambda: mdhess.lennard_jones(sigma=[[1.0, 0.9], [0.8, 1.0]]), r"sigma=\.\.\.\) must be symmetric"),
        (lambda: mdhess.lennard_jones(sigma=np.ones((2, 2)), epsilon=np.ones((3, 3))), r"species tables disagree on the number of species"),
        (lambda: mdhess.lennard_jones(cutoff=2.5, switch=3.0), r"0 <= switch < cutoff"),
        (lambda: mdhess.lennard_jones(switch=1.0), r"switch=1.0\) needs a cutoff"),
        (lambda: mdhess.morse(D=float("nan")), r"D=\.\.\.\) must be finite"),
        (lambda: mdhess.pair_potential("not a function"), r"phi=\.\.\.\) must be callable"),
        (lambda: mdhess.coulomb(), r"exactly one of qq or charges"),
        (lambda: mdhess.coulomb(qq=1.0, damping=0.2), r"damping=0.2\) \(damped shifted force\) needs a cutoff"),
        (lambda: mdhess.elastic_network(R4, cutoff=-2.0), r"elastic_network\(cutoff=\.\.\.\) must be a finite scalar > 0"),
        (lambda: mdhess.elastic_network(np.zeros((4, 2)), cutoff=2.0), r"reference_positions=\.\.\.\) expects shape"),
    ],
)
def test_potential_construction_bad_input(build, match):
    with pytest.raises(mdhess.InputError, match=match):
        build()


def test_not_a_potential_and_wrong_network_size():
    with pytest.raises(mdhess.InputError, match=r"potential=\.\.\.\) must be an mdhess potential.*got dict"):
        mdhess.energy({"sigma": 1.0}, R4)
    net = mdhess.elastic_network(R4, cutoff=2.0)
    with pytest.raises(mdhess.InputError, match=r"has 3 atoms but the elastic network was built on 4"):
        mdhess.hessian(net, R4[:3])


def test_operator_bad_vector_and_nonfinite_blocks():
    op = mdhess.hvp(LJ, R4)
    with pytest.raises(mdhess.InputError, match=r"expects v of shape \(12,\) or \(12, k\); got \(5,\)"):
        op @ np.ones(5)
    bad = mdhess.pair_potential(lambda r: (r - 1.15) ** 0.5)  # sqrt of a negative number at r = 1.1
    with pytest.raises(mdhess.NonFiniteError, match="non-finite pair blocks"):
        mdhess.hessian(bad, R4, format="bsr")
    with pytest.raises(mdhess.NonFiniteError, match="non-finite"):
        mdhess.hessian(bad, R4)


def test_errors_are_value_errors():
    assert issubclass(mdhess.InputError, ValueError)
