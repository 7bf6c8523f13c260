// pair_style mlcalc: mlcalc models (NEMP, conservative MLANet) in LAMMPS, as a plugin.
//
// This file holds no model maths. It embeds Python and hands each rank's owned + ghost atoms
// to mlcalc.lammps.pair.PairEvaluator, which evaluates the same model code as mlcalc's ASE
// calculator. Two schemes (pair_style keyword `scheme`):
//   layers     the ghost shell is one cutoff; the model runs on the owned atoms' edges only
//              and, between layers, the ghost atoms' node features are replaced by their
//              owners' (forward communication through this pair style's pack/unpack); in
//              the backward pass the gradients that arrive on ghost atoms' features are
//              summed back to their owners (reverse communication), so forces are exact.
//   receptive  the ghost shell is the model's receptive field and the model runs on owned and
//              ghost atoms at once, without communication; only owned atoms' energies count.
// `auto` (default) picks receptive on one rank (no ghost atom enters its graph) and layers on
// several. Either way forces land on owned and ghost atoms and LAMMPS sums the ghost forces
// back to their owners (newton_pair on). Along periodic directions that the processor grid
// does not split, a rank holds the whole box: there the evaluator uses a periodic graph and
// leaves out the ghost atoms that are images along them. The virial and the per-atom virials
// come from the energy's derivatives with respect to the edge vectors (each edge's r (x) dE/dr
// split equally between its two atoms), so no fdotr.
//
// Built by `mlcalc lammps build`, which defines MLCALC_PYTHON (the interpreter whose
// site-packages hold mlcalc) and, when the headers have no version.h, MLCALC_LAMMPS_VERSION.

#include <Python.h>  // first, as Python requires

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "lammps.h"
#include "memory.h"
#include "neighbor.h"
#include "pair.h"
#include "utils.h"

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#if __has_include("version.h")
#include "version.h"
#define MLCALC_HOST_VERSION LAMMPS_VERSION
#else
#define MLCALC_HOST_VERSION MLCALC_LAMMPS_VERSION
#endif

#if __has_include("lammpsplugin.h")
#include "lammpsplugin.h"
#else
// The plugin ABI of LAMMPS's PLUGIN package (src/PLUGIN/lammpsplugin.h), which some
// installations do not ship among their headers.
extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
}
#endif

#ifndef MLCALC_PYTHON
#error "MLCALC_PYTHON (path of the Python interpreter with mlcalc installed) must be defined"
#endif

using namespace LAMMPS_NS;

namespace {

// Start the interpreter when the host (plain `lmp`) has none; a host driven from Python
// (the `lammps` module) already runs one. Either way the GIL is free afterwards.
void ensure_python()
{
  if (Py_IsInitialized()) return;
  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  config.install_signal_handlers = 0;  // leave SIGINT & co. to LAMMPS and MPI
  config.parse_argv = 0;
  // the venv's interpreter as program name: Python then finds its pyvenv.cfg and packages
  PyConfig_SetBytesString(&config, &config.program_name, MLCALC_PYTHON);
  PyStatus status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) Py_ExitStatusException(status);
  PyEval_SaveThread();
}

// Holds the GIL for the lifetime of the object.
class Gil {
 public:
  Gil() : state_(PyGILState_Ensure()) {}
  ~Gil() { PyGILState_Release(state_); }
  Gil(const Gil &) = delete;
  Gil &operator=(const Gil &) = delete;

 private:
  PyGILState_STATE state_;
};

// "Type: message" of the pending Python exception (cleared); the caller holds the GIL.
std::string python_error_message()
{
  PyObject *type = nullptr, *value = nullptr, *traceback = nullptr;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  std::string message = "unknown Python error";
  if (value != nullptr) {
    PyObject *text = PyObject_Str(value);
    if (text != nullptr) {
      const char *utf8 = PyUnicode_AsUTF8(text);
      if (utf8 != nullptr) message = utf8;
      Py_DECREF(text);
    }
    const char *name = reinterpret_cast<PyTypeObject *>(type)->tp_name;
    message = std::string(name) + ": " + message;
  }
  PyErr_Clear();
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(traceback);
  return message;
}

}  // namespace

namespace LAMMPS_NS {

class PairMLCalc : public Pair {
 public:
  explicit PairMLCalc(LAMMPS *lmp) : Pair(lmp)
  {
    single_enable = 0;
    restartinfo = 0;
    one_coeff = 1;
    manybody_flag = 1;
    no_virial_fdotr_compute = 1;  // the evaluator returns the virial itself
    centroidstressflag = CENTROID_AVAIL;
    // compute pair mlcalc (sums over ranks): pvector[0] the ghost atoms in this rank's graph,
    // pvector[1] the seconds it spent in exchanges between layers (last evaluation)
    nextra = 2;
    pvector = new double[nextra];
    pvector[0] = pvector[1] = 0.0;
    ensure_python();
  }

  ~PairMLCalc() override
  {
    if (evaluator_ != nullptr && Py_IsInitialized()) {
      Gil gil;
      Py_DECREF(evaluator_);
    }
    delete[] pvector;
    if (allocated) {
      memory->destroy(setflag);
      memory->destroy(cutsq);
    }
  }

  // pair_style mlcalc MODEL [device cpu|cuda|cuda:N] [dtype float32|float64]
  //                         [scheme auto|layers|receptive]
  void settings(int narg, char **arg) override
  {
    if (narg < 1 || narg % 2 == 0)
      error->all(FLERR, "Illegal pair_style mlcalc command: expected 'pair_style mlcalc MODEL "
                        "[device cpu|cuda] [dtype float32|float64] [scheme auto|layers|receptive]'");
    model_ = arg[0];
    device_ = "cpu";
    dtype_.clear();
    scheme_ = "auto";
    for (int i = 1; i < narg; i += 2) {
      const std::string key = arg[i];
      if (key == "device")
        device_ = arg[i + 1];
      else if (key == "dtype")
        dtype_ = arg[i + 1];
      else if (key == "scheme")
        scheme_ = arg[i + 1];
      else
        error->all(FLERR,
                   "Illegal pair_style mlcalc keyword '{}': expected device, dtype or scheme",
                   key);
    }
    if (scheme_ != "auto" && scheme_ != "layers" && scheme_ != "receptive")
      error->all(FLERR, "pair_style mlcalc scheme must be auto, layers or receptive, got '{}'",
                 scheme_);
  }

  // pair_coeff * * El1 El2 ...: the element of each atom type (NULL: type not used)
  void coeff(int narg, char **arg) override
  {
    if (!allocated) allocate();
    if (narg != 2 + atom->ntypes)
      error->all(FLERR, "pair_coeff for pair_style mlcalc needs '* *' and one element per atom "
                        "type ({} types), got {} argument(s)", atom->ntypes, narg);
    map_element2type(narg - 2, arg + 2);
    create_evaluator();
  }

  void init_style() override
  {
    if (force->newton_pair == 0)
      error->all(FLERR, "pair_style mlcalc requires 'newton on' (ghost-atom forces are summed "
                        "back to their owners)");
    if (evaluator_ == nullptr)
      error->all(FLERR, "pair_style mlcalc: pair_coeff * * <elements> must come first");
    // no neighbour list is requested: the model builds its own graph from owned and ghost
    // atoms. The ghost shell comes from init_one().
    layers_ = scheme_ == "layers" || (scheme_ == "auto" && comm->nprocs > 1);
    comm_forward = comm_reverse = layers_ ? max_exchange_width_ : 0;
    // LAMMPS sizes its communication buffers from force->pair, which under pair_style hybrid
    // took its sizes from the sub-styles before this one knew its own
    Pair *host = force->pair;
    if (host != this) {
      host->comm_forward = std::max(host->comm_forward, comm_forward);
      host->comm_reverse = std::max(host->comm_reverse, comm_reverse);
    }
    if (comm->me == 0)
      utils::logmesg(lmp, "pair_style mlcalc: scheme {}, ghost shell {:.4g} A + neighbor skin\n",
                     layers_ ? "layers (node features exchanged between layers)"
                             : "receptive (ghost shell of the receptive field)",
                     ghost_shell());
    check_ghost_shell();
  }

  double init_one(int, int) override { return ghost_shell(); }

  // Per-atom features of all atoms (rows of exchange_width_ doubles) for the exchanges.
  int pack_forward_comm(int n, int *list, double *buf, int, int *) override
  {
    const size_t w = exchange_width_;
    for (int i = 0; i < n; i++)
      std::memcpy(buf + i * w, exchange_buffer_ + list[i] * w, w * sizeof(double));
    return n * exchange_width_;
  }

  void unpack_forward_comm(int n, int first, double *buf) override
  {
    const size_t w = exchange_width_;
    std::memcpy(exchange_buffer_ + first * w, buf, n * w * sizeof(double));
  }

  int pack_reverse_comm(int n, int first, double *buf) override
  {
    const size_t w = exchange_width_;
    std::memcpy(buf, exchange_buffer_ + first * w, n * w * sizeof(double));
    return n * exchange_width_;
  }

  void unpack_reverse_comm(int n, int *list, double *buf) override
  {
    const size_t w = exchange_width_;
    for (int i = 0; i < n; i++) {
      double *row = exchange_buffer_ + list[i] * w;
      const double *incoming = buf + i * w;
      for (size_t k = 0; k < w; k++) row[k] += incoming[k];
    }
  }

  // Called back by the evaluator between layers: forward (ghost rows of `buffer` [nall,
  // width] get their owners' rows) or reverse (owners' rows get the sum of their ghosts').
  void communicate(int reverse, double *buffer, int width)
  {
    if (width <= 0 || width > comm_forward)
      error->one(FLERR, "pair_style mlcalc: exchange of {} values per atom, above the {} set up",
                 width, comm_forward);
    exchange_buffer_ = buffer;
    exchange_width_ = width;
    if (reverse)
      comm->reverse_comm(this, width);
    else
      comm->forward_comm(this, width);
    exchange_buffer_ = nullptr;
  }

  void compute(int eflag, int vflag) override
  {
    ev_init(eflag, vflag);
    const int nlocal = atom->nlocal;
    const int nall = nlocal + atom->nghost;
    // periodic directions along which this rank holds the whole box (the brick processor
    // grid does not split them): the model sees them periodic, as in the ASE calculator,
    // without the ghost images along them. Not with comm_style tiled on several ranks (no
    // processor grid).
    int periodic = 0;
    const bool alone = comm->nprocs == 1;
    if (comm->style == Comm::BRICK || alone)
      for (int d = 0; d < 3; d++)
        if (domain->periodicity[d] && (alone || comm->procgrid[d] == 1)) periodic |= 1 << d;
    // telling the images of an atom apart takes atom IDs (not needed for the owned atoms alone)
    if (!atom->tag_enable && periodic != 7) periodic = 0;
    double cell[9] = {domain->xprd, 0.0,          0.0,         domain->xy, domain->yprd,
                      0.0,          domain->xz,   domain->yz,  domain->zprd};
    double energy = 0.0, exchange_seconds = 0.0;
    int ghosts = 0;
    {
      Gil gil;
      PyObject *result = PyObject_CallMethod(
          evaluator_, "compute", "iiKKKiKKKKKiKKK", nlocal, nall,
          address(nall ? atom->x[0] : nullptr), address(atom->type), address(atom->tag),
          static_cast<int>(sizeof(tagint)), address(nall ? atom->f[0] : nullptr),
          address(eflag_atom ? eatom : nullptr), address(vflag_global ? virial : nullptr),
          address(vflag_atom && nall ? vatom[0] : nullptr),
          address(cvflag_atom && nall ? cvatom[0] : nullptr), periodic, address(cell),
          address(layers_ ? reinterpret_cast<void *>(&exchange_callback) : nullptr),
          address(this));
      if (result == nullptr) {
        const std::string message = python_error_message();
        error->one(FLERR, "pair_style mlcalc: {}", message);
      }
      if (!PyArg_ParseTuple(result, "did", &energy, &ghosts, &exchange_seconds)) {
        Py_DECREF(result);
        const std::string message = python_error_message();
        error->one(FLERR,
                   "pair_style mlcalc: the evaluator returned no (energy, ghosts, seconds): {}",
                   message);
      }
      Py_DECREF(result);
    }
    pvector[0] = ghosts;
    pvector[1] = exchange_seconds;
    if (eflag_global) eng_vdwl += energy;
  }

 private:
  static unsigned long long address(const void *pointer)
  {
    return static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(pointer));
  }

  // the evaluator's way back in: communicate() on the pair style at `pair` (ctypes calls it
  // without the GIL; LAMMPS's communication touches no Python)
  static void exchange_callback(void *pair, int reverse, double *buffer, int width)
  {
    static_cast<PairMLCalc *>(pair)->communicate(reverse, buffer, width);
  }

  double ghost_shell() const { return layers_ ? cutoff_ : receptive_field_; }

  PyObject *evaluator_ = nullptr;
  std::string model_, device_, dtype_, scheme_ = "auto";
  double receptive_field_ = 0.0, cutoff_ = 0.0;
  bool layers_ = false;
  int max_exchange_width_ = 0;  // values per atom of the widest exchange
  int exchange_width_ = 0;      // ... and of the current one
  double *exchange_buffer_ = nullptr;

  void allocate()
  {
    allocated = 1;
    const int n = atom->ntypes + 1;
    memory->create(setflag, n, n, "pair:setflag");
    memory->create(cutsq, n, n, "pair:cutsq");
    map = new int[n];
    for (int i = 0; i < n; i++) map[i] = -1;
    for (int i = 1; i < n; i++)
      for (int j = i; j < n; j++) setflag[i][j] = 0;
  }

  // The rank's index among the ranks on its node (for picking a GPU).
  int local_rank()
  {
    MPI_Comm node;
    MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node);
    int rank = 0;
    MPI_Comm_rank(node, &rank);
    MPI_Comm_free(&node);
    return rank;
  }

  void create_evaluator()
  {
    const int rank = local_rank();
    Gil gil;
    if (evaluator_ != nullptr) {
      Py_DECREF(evaluator_);
      evaluator_ = nullptr;
    }
    PyObject *elements = PyList_New(atom->ntypes);
    for (int t = 1; t <= atom->ntypes; t++) {
      PyObject *item = nullptr;
      if (map[t] >= 0) {
        item = PyUnicode_FromString(elements_name(map[t]));
      } else {
        Py_INCREF(Py_None);
        item = Py_None;
      }
      PyList_SET_ITEM(elements, t - 1, item);
    }
    PyObject *module = PyImport_ImportModule("mlcalc.lammps.pair");
    PyObject *created = nullptr;
    if (module != nullptr) {
      created = PyObject_CallMethod(module, "PairEvaluator", "sOssi", model_.c_str(), elements,
                                    device_.c_str(), dtype_.c_str(), rank);
      Py_DECREF(module);
    }
    Py_DECREF(elements);
    if (created == nullptr) {
      const std::string message = python_error_message();
      error->all(FLERR, "pair_style mlcalc: {}", message);
    }
    receptive_field_ = float_attribute(created, "receptive_field");
    cutoff_ = float_attribute(created, "cutoff");
    max_exchange_width_ = static_cast<int>(float_attribute(created, "exchange_width"));
    if (!(receptive_field_ > 0.0 && cutoff_ > 0.0 && max_exchange_width_ >= 0)) {
      Py_DECREF(created);
      error->all(FLERR, "pair_style mlcalc: the evaluator reported no receptive field, cutoff "
                        "or exchange width");
    }
    evaluator_ = created;
    for (int i = 1; i <= atom->ntypes; i++)
      for (int j = i; j <= atom->ntypes; j++) setflag[i][j] = (map[i] >= 0 && map[j] >= 0);
  }

  const char *elements_name(int index) const { return elements[index]; }

  // A number attribute of `object` (-1 when missing); the caller holds the GIL.
  static double float_attribute(PyObject *object, const char *name)
  {
    PyObject *value = PyObject_GetAttrString(object, name);
    double number = value != nullptr ? PyFloat_AsDouble(value) : -1.0;
    Py_XDECREF(value);
    if (PyErr_Occurred()) {
      PyErr_Clear();
      number = -1.0;
    }
    return number;
  }

  // Refuse a ghost shell the communication pattern cannot hold, or a user's comm_modify
  // cutoff below it. comm_style brick gathers ghosts over as many neighbouring sub-domains
  // (and periodic wraps) as needed, so any cell works; comm_style tiled takes ghosts from one
  // periodic image only, so each periodic width of the box must exceed the shell.
  void check_ghost_shell()
  {
    const double shell = ghost_shell() + neighbor->skin;
    if (comm->mode == Comm::SINGLE && comm->cutghostuser > 0.0 && comm->cutghostuser < shell)
      error->all(FLERR,
                 "pair_style mlcalc: comm_modify cutoff {:.4g} A is below the ghost shell the "
                 "{} scheme needs ({:.4g} A + neighbor skin {:.4g} A); raise it or leave it out",
                 comm->cutghostuser, layers_ ? "layers" : "receptive", ghost_shell(),
                 neighbor->skin);
    if (comm->style != Comm::TILED) return;
    // perpendicular widths of the (restricted triclinic) box: volume / area of each face
    const double a[3] = {domain->xprd, 0.0, 0.0};
    const double b[3] = {domain->xy, domain->yprd, 0.0};
    const double c[3] = {domain->xz, domain->yz, domain->zprd};
    const double *rows[3] = {a, b, c};
    const double volume = domain->xprd * domain->yprd * domain->zprd;
    const char *axes = "xyz";
    for (int d = 0; d < 3; d++) {
      if (!domain->periodicity[d]) continue;
      const double *u = rows[(d + 1) % 3], *v = rows[(d + 2) % 3];
      const double cross[3] = {u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2],
                               u[0] * v[1] - u[1] * v[0]};
      const double area =
          std::sqrt(cross[0] * cross[0] + cross[1] * cross[1] + cross[2] * cross[2]);
      const double width = volume / area;
      if (width < shell)
        error->all(FLERR,
                   "pair_style mlcalc: the periodic width of the box along {} ({:.4g} A) is "
                   "below the ghost shell ({:.4g} A + neighbor skin {:.4g} A), which "
                   "comm_style tiled cannot hold; use comm_style brick or replicate the cell",
                   axes[d], width, ghost_shell(), neighbor->skin);
    }
  }
};

}  // namespace LAMMPS_NS

static Pair *create_pair_mlcalc(LAMMPS *lmp)
{
  return new PairMLCalc(lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  auto *host = static_cast<LAMMPS *>(lmp);
  if (std::strcmp(host->version, MLCALC_HOST_VERSION) != 0 && host->comm->me == 0)
    host->error->warning(FLERR, "the mlcalc plugin was built for LAMMPS {} but is loaded into "
                                "LAMMPS {}; rebuild it with 'mlcalc lammps build "
                                "--lammps-headers <this LAMMPS's src/>'",
                         MLCALC_HOST_VERSION, host->version);
  lammpsplugin_t plugin;
  std::memset(&plugin, 0, sizeof(plugin));
  plugin.version = MLCALC_HOST_VERSION;
  plugin.style = "pair";
  plugin.name = "mlcalc";
  plugin.info = "mlcalc models (NEMP, conservative MLANet) through embedded Python";
  plugin.author = "mlcalc developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &create_pair_mlcalc;
  plugin.handle = handle;
  (*reinterpret_cast<lammpsplugin_regfunc>(regfunc))(&plugin, lmp);
}
