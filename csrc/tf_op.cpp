// nnjpeg/_tf_op.so: the round trip as a TensorFlow op, NnjpegRoundTrip, loaded by
// tf.load_op_library (nnjpeg/tf_ops.py). tf.data and models then call the codec from TensorFlow's
// own threads, without Python or the GIL, into an output TensorFlow allocated: no conversion to
// and from NumPy per call, which through tf.numpy_function cost as much as the codec itself on
// small batches.
//
// Built with the package, without TensorFlow at hand: the op uses TensorFlow's stable C API
// (tensorflow/c/kernels.h, ops.h), declared here for the calls it makes and bound at load time
// with dlsym from the libtensorflow_framework already in the process. The library links no
// TensorFlow, so it loads against any TensorFlow 2 release that exports these functions; when one
// is missing it registers nothing, and Python falls back to tf.numpy_function.
//
// Built with CUDA (-DNNJPEG_CUDA=ON, or the host emulation), the op also has a GPU kernel: it runs
// csrc/cuda/roundtrip.cu on the tensors in device memory, so a model on a GPU never copies its
// images to the host. The C API gives a kernel no handle on TensorFlow's CUDA streams (TF_GetStream
// serves only pluggable devices), so the kernel waits for the whole device before it reads its
// input and for its own stream before it returns (nnjpeg::cuda::roundtrip_device).
#include <dlfcn.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "codec.h"
#include "kernels.h"

#ifdef NNJPEG_HAVE_CUDA
#include "cuda/roundtrip.h"
#endif

namespace {

// Opaque TensorFlow C API types, and the enum values used (fixed by TensorFlow's types.proto and
// error_codes.proto).
struct TF_Status;
struct TF_Tensor;
struct TF_OpKernelConstruction;
struct TF_OpKernelContext;
struct TF_KernelBuilder;
struct TF_OpDefinitionBuilder;
struct TF_ShapeInferenceContext;
struct TF_ShapeHandle;
using TF_DataType = int;
constexpr TF_DataType kFloat = 1, kUint8 = 4;
constexpr int kOk = 0, kInvalidArgument = 3, kInternal = 13;
// tensorflow/c/tf_tensor.h: on_host 0 asks for the kernel's device memory.
struct TF_AllocatorAttributes {
  std::size_t struct_size;
  unsigned char on_host;
};
constexpr std::size_t kAllocatorAttributesSize = offsetof(TF_AllocatorAttributes, on_host) + 1;

// The C API functions the op calls, resolved by name at load time.
struct Api {
  TF_Status* (*NewStatus)();
  void (*DeleteStatus)(TF_Status*);
  void (*SetStatus)(TF_Status*, int code, const char* msg);
  int (*GetCode)(const TF_Status*);
  TF_OpDefinitionBuilder* (*NewOpDefinitionBuilder)(const char*);
  void (*OpDefinitionBuilderAddInput)(TF_OpDefinitionBuilder*, const char*);
  void (*OpDefinitionBuilderAddOutput)(TF_OpDefinitionBuilder*, const char*);
  void (*OpDefinitionBuilderAddAttr)(TF_OpDefinitionBuilder*, const char*);
  void (*OpDefinitionBuilderSetShapeInferenceFunction)(TF_OpDefinitionBuilder*,
                                                       void (*)(TF_ShapeInferenceContext*, TF_Status*));
  void (*RegisterOpDefinition)(TF_OpDefinitionBuilder*, TF_Status*);
  TF_ShapeHandle* (*NewShapeHandle)();
  void (*DeleteShapeHandle)(TF_ShapeHandle*);
  void (*ShapeInferenceContextGetInput)(TF_ShapeInferenceContext*, int, TF_ShapeHandle*, TF_Status*);
  void (*ShapeInferenceContextSetOutput)(TF_ShapeInferenceContext*, int, TF_ShapeHandle*, TF_Status*);
  TF_KernelBuilder* (*NewKernelBuilder)(const char*, const char*, void* (*)(TF_OpKernelConstruction*),
                                        void (*)(void*, TF_OpKernelContext*), void (*)(void*));
  void (*KernelBuilder_TypeConstraint)(TF_KernelBuilder*, const char*, TF_DataType, TF_Status*);
  void (*RegisterKernelBuilder)(const char*, TF_KernelBuilder*, TF_Status*);
  void (*OpKernelConstruction_GetAttrSize)(TF_OpKernelConstruction*, const char*, std::int32_t*,
                                           std::int32_t*, TF_Status*);
  void (*OpKernelConstruction_GetAttrFloatList)(TF_OpKernelConstruction*, const char*, float*, int,
                                                TF_Status*);
  void (*OpKernelConstruction_GetAttrInt32)(TF_OpKernelConstruction*, const char*, std::int32_t*,
                                            TF_Status*);
  void (*OpKernelConstruction_Failure)(TF_OpKernelConstruction*, TF_Status*);
  void (*GetInput)(TF_OpKernelContext*, int, TF_Tensor**, TF_Status*);
  TF_Tensor* (*AllocateOutput)(TF_OpKernelContext*, int, TF_DataType, const std::int64_t*, int,
                               std::size_t, TF_Status*);
  void (*OpKernelContext_Failure)(TF_OpKernelContext*, TF_Status*);
  TF_DataType (*TensorType)(const TF_Tensor*);
  int (*NumDims)(const TF_Tensor*);
  std::int64_t (*Dim)(const TF_Tensor*, int);
  void* (*TensorData)(const TF_Tensor*);
  void (*DeleteTensor)(TF_Tensor*);
  // The GPU kernel's, bound only in builds with CUDA.
  TF_Tensor* (*AllocateTemp)(TF_OpKernelContext*, TF_DataType, const std::int64_t*, int, TF_AllocatorAttributes*,
                             TF_Status*);
  int (*GetDeviceId)(TF_OpKernelContext*);
  void (*KernelBuilder_Label)(TF_KernelBuilder*, const char*);
};

Api api;

template <class F>
bool bind(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  return fn != nullptr;
}

// RTLD_NOLOAD: only the copy TensorFlow loaded; never a second one.
void* framework() { return dlopen("libtensorflow_framework.so.2", RTLD_NOW | RTLD_NOLOAD); }

// Each C API function binds the Api member of its name without the "TF_" prefix.
#define NNJPEG_BIND(name) bind(lib, "TF_" #name, api.name)

bool bind_api() {
  void* lib = framework();
  if (lib == nullptr) return false;
  return NNJPEG_BIND(NewStatus) && NNJPEG_BIND(DeleteStatus) && NNJPEG_BIND(SetStatus) &&
         NNJPEG_BIND(GetCode) && NNJPEG_BIND(NewOpDefinitionBuilder) &&
         NNJPEG_BIND(OpDefinitionBuilderAddInput) && NNJPEG_BIND(OpDefinitionBuilderAddOutput) &&
         NNJPEG_BIND(OpDefinitionBuilderAddAttr) &&
         NNJPEG_BIND(OpDefinitionBuilderSetShapeInferenceFunction) && NNJPEG_BIND(RegisterOpDefinition) &&
         NNJPEG_BIND(NewShapeHandle) && NNJPEG_BIND(DeleteShapeHandle) &&
         NNJPEG_BIND(ShapeInferenceContextGetInput) && NNJPEG_BIND(ShapeInferenceContextSetOutput) &&
         NNJPEG_BIND(NewKernelBuilder) && NNJPEG_BIND(KernelBuilder_TypeConstraint) &&
         NNJPEG_BIND(RegisterKernelBuilder) && NNJPEG_BIND(OpKernelConstruction_GetAttrSize) &&
         NNJPEG_BIND(OpKernelConstruction_GetAttrFloatList) &&
         NNJPEG_BIND(OpKernelConstruction_GetAttrInt32) && NNJPEG_BIND(OpKernelConstruction_Failure) &&
         NNJPEG_BIND(GetInput) && NNJPEG_BIND(AllocateOutput) && NNJPEG_BIND(OpKernelContext_Failure) &&
         NNJPEG_BIND(TensorType) && NNJPEG_BIND(NumDims) && NNJPEG_BIND(Dim) && NNJPEG_BIND(TensorData) &&
         NNJPEG_BIND(DeleteTensor);
}

// The GPU kernel's functions; without them the op keeps its CPU kernel alone.
bool bind_gpu_api() {
  void* lib = framework();
  return lib != nullptr && NNJPEG_BIND(AllocateTemp) && NNJPEG_BIND(GetDeviceId) && NNJPEG_BIND(KernelBuilder_Label);
}
#undef NNJPEG_BIND

// A TF_Status for the length of a scope.
struct Status {
  TF_Status* s = api.NewStatus();
  ~Status() { api.DeleteStatus(s); }
  bool ok() const { return api.GetCode(s) == kOk; }
};

// A tensor whose ownership the C API handed over.
struct Tensor {
  TF_Tensor* t = nullptr;
  ~Tensor() {
    if (t != nullptr) api.DeleteTensor(t);
  }
};

// The attributes, checked once when TensorFlow builds the kernel: tables (planes x 64, natural
// order, already validated by nnjpeg.tf_ops), mode (nnjpeg::Mode) and threads.
struct Attrs {
  std::vector<float> tables;
  int mode = 0;
  int threads = 1;
};

void* create(TF_OpKernelConstruction* ctx) {
  Status st;
  auto* attrs = new Attrs;
  std::int32_t size = 0, total = 0, mode = 0, threads = 0;
  api.OpKernelConstruction_GetAttrSize(ctx, "tables", &size, &total, st.s);
  if (st.ok()) {
    attrs->tables.resize(static_cast<std::size_t>(size));
    api.OpKernelConstruction_GetAttrFloatList(ctx, "tables", attrs->tables.data(), size, st.s);
  }
  if (st.ok()) api.OpKernelConstruction_GetAttrInt32(ctx, "mode", &mode, st.s);
  if (st.ok()) api.OpKernelConstruction_GetAttrInt32(ctx, "threads", &threads, st.s);
  if (st.ok() && (size != 64 && size != 3 * 64)) {
    api.SetStatus(st.s, kInvalidArgument,
                  ("Expected tables of 64 or 192 floats (planes x 64). Received: " + std::to_string(size)).c_str());
  }
  if (st.ok() && (mode < 0 || mode > static_cast<int>(nnjpeg::Mode::kYcc420))) {
    api.SetStatus(st.s, kInvalidArgument,
                  ("Expected mode in 0...3 (nnjpeg::Mode). Received: " + std::to_string(mode)).c_str());
  }
  if (!st.ok()) {
    api.OpKernelConstruction_Failure(ctx, st.s);
    delete attrs;
    return nullptr;
  }
  attrs->mode = mode;
  attrs->threads = threads;
  return attrs;
}

void destroy(void* kernel) { delete static_cast<Attrs*>(kernel); }

void fail(TF_OpKernelContext* ctx, const std::string& msg) {
  Status st;
  api.SetStatus(st.s, kInvalidArgument, msg.c_str());
  api.OpKernelContext_Failure(ctx, st.s);
}

std::string shape_string(const std::vector<std::int64_t>& dims) {
  std::string s = "(";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

// A float as NumPy prints a float32: the shortest form that reads back, with ".0" on whole numbers.
std::string float_string(float v) {
  char buf[32];
  const auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  std::string s(buf, end);
  if (s.find_first_of(".eian") == std::string::npos) s += ".0";
  return s;
}

// nnjpeg.codec._check_range's message, for contiguous float32 images known to hold a value
// outside [0, 1].
std::string range_message(const nnjpeg::ImageView& v) {
  const float* p = reinterpret_cast<const float*>(v.data);
  const std::int64_t n = v.n * v.h * v.w * v.c;
  std::int64_t nonfinite = 0;
  float lo = p[0], hi = p[0];
  for (std::int64_t i = 0; i < n; ++i) {
    nonfinite += !std::isfinite(p[i]);
    lo = std::min(lo, p[i]);
    hi = std::max(hi, p[i]);
  }
  if (nonfinite) {
    return "Expected float32 images with finite values in [0, 1]. Received: " + std::to_string(nonfinite) +
           " NaN/Inf values";
  }
  return "Expected float32 images with values in [0, 1]. Received: min=" + float_string(lo) +
         ", max=" + float_string(hi);
}

// The input and the output of one call, checked and allocated by `prepare`.
struct Call {
  Tensor in, out;
  nnjpeg::ImageView view{};
};

// The messages of nnjpeg.codec._check_image_spec, for inputs whose shape only shows at run time;
// false once the kernel has failed.
bool prepare(const Attrs& attrs, TF_OpKernelContext* ctx, Call& call) {
  Status st;
  api.GetInput(ctx, 0, &call.in.t, st.s);
  if (!st.ok()) {
    api.OpKernelContext_Failure(ctx, st.s);
    return false;
  }
  const TF_DataType dtype = api.TensorType(call.in.t);
  std::vector<std::int64_t> dims(static_cast<std::size_t>(api.NumDims(call.in.t)));
  for (std::size_t i = 0; i < dims.size(); ++i) dims[i] = api.Dim(call.in.t, static_cast<int>(i));
  const std::string received = "Received: shape=" + shape_string(dims);
  if ((dims.size() != 3 && dims.size() != 4) || (dims.back() != 1 && dims.back() != 3)) {
    fail(ctx, "Expected images of dtype uint8 or float32 with shape (H, W, C) or (N, H, W, C), "
              "C in {1, 3}. " + received);
    return false;
  }
  const std::size_t r = dims.size();
  if (dims[r - 3] < 1 || dims[r - 2] < 1) {
    fail(ctx, "Expected images with H >= 1 and W >= 1. " + received);
    return false;
  }
  const std::int64_t c = dims[r - 1];
  const std::int64_t planes = c == 3 ? 3 : 1;
  if (static_cast<std::int64_t>(attrs.tables.size()) != 64 * planes) {
    fail(ctx, "Expected " + std::to_string(64 * planes) + " table entries for " + std::to_string(c) +
                  "-channel images. Received: " + std::to_string(attrs.tables.size()));
    return false;
  }

  nnjpeg::ImageView& view = call.view;
  view.data = static_cast<const std::uint8_t*>(api.TensorData(call.in.t));
  view.is_float = dtype == kFloat;
  view.n = r == 4 ? dims[0] : 1;
  view.h = dims[r - 3];
  view.w = dims[r - 2];
  view.c = c;
  view.sc = view.is_float ? 4 : 1;
  view.sw = view.sc * view.c;
  view.sh = view.sw * view.w;
  view.sn = view.sh * view.h;
  call.out.t = api.AllocateOutput(ctx, 0, dtype, dims.data(), static_cast<int>(r),
                                  static_cast<std::size_t>(view.n * view.sn), st.s);
  if (!st.ok()) {
    api.OpKernelContext_Failure(ctx, st.s);
    return false;
  }
  return true;
}

void compute(void* kernel, TF_OpKernelContext* ctx) {
  const Attrs& attrs = *static_cast<const Attrs*>(kernel);
  Call call;
  if (!prepare(attrs, ctx, call)) return;
  if (!nnjpeg::roundtrip(call.view, api.TensorData(call.out.t), attrs.tables.data(),
                         static_cast<nnjpeg::Mode>(attrs.mode), attrs.threads, nnjpeg::active_kernel())) {
    fail(ctx, range_message(call.view));  // the range is checked as samples load
  }
}

#ifdef NNJPEG_HAVE_CUDA
void fail_internal(TF_OpKernelContext* ctx, const std::string& msg) {
  Status st;
  api.SetStatus(st.s, kInternal, msg.c_str());
  api.OpKernelContext_Failure(ctx, st.s);
}

// The GPU kernel: images, output and scratch in the device's memory, the scratch from TensorFlow's
// allocator (which holds most of the device's memory), the tables from the attributes on the host.
void compute_gpu(void* kernel, TF_OpKernelContext* ctx) {
  const Attrs& attrs = *static_cast<const Attrs*>(kernel);
  Call call;
  if (!prepare(attrs, ctx, call)) return;
  const auto mode = static_cast<nnjpeg::Mode>(attrs.mode);
  const std::size_t scratch_bytes = nnjpeg::cuda::device_scratch_bytes(call.view, mode);
  if (scratch_bytes == 0) return;  // an empty batch
  Status st;
  TF_AllocatorAttributes on_device{kAllocatorAttributesSize, 0};
  const std::int64_t scratch_dims[1] = {static_cast<std::int64_t>(scratch_bytes)};
  Tensor scratch;
  scratch.t = api.AllocateTemp(ctx, kUint8, scratch_dims, 1, &on_device, st.s);
  if (!st.ok()) {
    api.OpKernelContext_Failure(ctx, st.s);
    return;
  }
  bool in_range = true;
  std::string err = nnjpeg::cuda::roundtrip_device(call.view, api.TensorData(call.out.t), attrs.tables.data(), mode,
                                                   api.GetDeviceId(ctx), api.TensorData(scratch.t), scratch_bytes,
                                                   &in_range);
  if (!err.empty()) return fail_internal(ctx, err);
  if (in_range) return;
  // The error path: the message is the CPU kernel's, from a host copy of the images.
  const std::size_t bytes = static_cast<std::size_t>(call.view.n * call.view.sn);
  std::vector<std::uint8_t> host(bytes);
  if (err = nnjpeg::cuda::copy_to_host(host.data(), call.view.data, bytes); !err.empty()) {
    return fail_internal(ctx, err);
  }
  nnjpeg::ImageView on_host = call.view;
  on_host.data = host.data();
  fail(ctx, range_message(on_host));
}
#endif

void same_shape(TF_ShapeInferenceContext* ctx, TF_Status* status) {
  TF_ShapeHandle* shape = api.NewShapeHandle();
  api.ShapeInferenceContextGetInput(ctx, 0, shape, status);
  if (api.GetCode(status) == kOk) api.ShapeInferenceContextSetOutput(ctx, 0, shape, status);
  api.DeleteShapeHandle(shape);
}

// One kernel of the op for `device` and images of type `t`, under `label` when given.
bool register_kernel(const char* device, TF_DataType t, void (*fn)(void*, TF_OpKernelContext*), const char* label) {
  Status st;
  TF_KernelBuilder* k = api.NewKernelBuilder("NnjpegRoundTrip", device, &create, fn, &destroy);
  api.KernelBuilder_TypeConstraint(k, "T", t, st.s);
  if (!st.ok()) return false;
  if (label != nullptr) api.KernelBuilder_Label(k, label);
  const std::string name = std::string("NnjpegRoundTrip_") + device + (t == kUint8 ? "_uint8" : "_float") +
                           (label != nullptr ? std::string("_") + label : std::string());
  api.RegisterKernelBuilder(name.c_str(), k, st.s);
  return st.ok();
}

bool register_op() {
  if (!bind_api()) return false;
  Status st;
  TF_OpDefinitionBuilder* op = api.NewOpDefinitionBuilder("NnjpegRoundTrip");
  api.OpDefinitionBuilderAddInput(op, "images: T");
  api.OpDefinitionBuilderAddOutput(op, "output: T");
  api.OpDefinitionBuilderAddAttr(op, "T: {uint8, float}");
  api.OpDefinitionBuilderAddAttr(op, "tables: list(float)");
  api.OpDefinitionBuilderAddAttr(op, "mode: int");
  api.OpDefinitionBuilderAddAttr(op, "threads: int >= 1");
  api.OpDefinitionBuilderSetShapeInferenceFunction(op, &same_shape);
  api.RegisterOpDefinition(op, st.s);
  if (!st.ok()) return false;
  for (const TF_DataType t : {kUint8, kFloat}) {
    if (!register_kernel("CPU", t, &compute, nullptr)) return false;
  }
#ifdef NNJPEG_HAVE_CUDA
  // No CUDA call here: the library loads when TensorFlow is imported, and a process that starts
  // CUDA then cannot use it in the children it forks. A driver too old for the toolkit shows at
  // the first call on a GPU, as the CUDA error.
  if (bind_gpu_api()) {
    // The images, and the output, in device memory: the C API's default for a GPU kernel's
    // arguments. The tables are attributes, on the host.
    for (const TF_DataType t : {kUint8, kFloat}) register_kernel("GPU", t, &compute_gpu, nullptr);
#ifdef NNJPEG_CUDA_EMULATION
    // Without a GPU, TensorFlow places nothing on one. The emulated GPU kernel, whose device
    // memory is host memory, is also a CPU kernel under this label, which a graph selects with
    // _kernel_label_map: tests then run it inside TensorFlow.
    for (const TF_DataType t : {kUint8, kFloat}) register_kernel("CPU", t, &compute_gpu, "nnjpeg_emulated_gpu");
#endif
  }
#endif
  return true;
}

// tf.load_op_library collects the ops a library registers while it is being loaded.
const bool registered = register_op();

}  // namespace

// For nnjpeg.tf_ops: whether the op registered (false: a C API function was missing).
extern "C" __attribute__((visibility("default"))) int nnjpeg_tf_op_registered() { return registered ? 1 : 0; }
