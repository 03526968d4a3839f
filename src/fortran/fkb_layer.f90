!! The one abstract interface every layer implements.
!!
!! A layer is created by the registry (fkb_layer_registry) from its type name, reads its
!! options from a `fkb_config_t` in `configure` (which also declares the parameter tensors it
!! expects, names and shapes, and sets n_out), has its tensors filled by the loader, is
!! `prepare`d (derived constants), and then runs `forward` on whole batches: x(n_in, batch) ->
!! y(n_out, batch), one sample per column, in the network's precision. `forward` must not
!! allocate and must not modify the layer, so that many threads may run it at once.
!!
!! Shapes (format 1.2): before `configure` the model sets `in_shapes` (the per-sample Keras
!! shape of each input, batch axis dropped) and n_in. A layer that `acts_on_last_axis` (Dense,
!! activations, normalizations) sees only the last axis: n_in is its size and the other axes
!! become `reps` more columns per sample, so forward gets x(n_in, reps*batch). Any other layer
!! gets the whole sample flat (n_in = product of the shape, reps = 1) and, if its output is
!! not simply `(n_out,)` or the input's shape, sets `out_shape` in configure. Layers with
!! several inputs (merge layers) override `forward_multi`; layers needing scratch space or
!! carrying recurrent state set `scratch`/`state_size` and override `forward_ws`.
module fkb_layer
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK
  use fkb_tensor, only: fkb_tensor_t, FKB_FLOAT32
  use fkb_config, only: fkb_config_t
  use fkb_activation, only: fkb_activation_t, apply_activation
  implicit none
  private
  public :: fkb_layer_t, shape_t, view32_t, view64_t

  type :: shape_t
    integer(int64), allocatable :: d(:)   !! per-sample Keras shape (C order, no batch axis)
  end type shape_t

  !> A batch of one value, x(rows, columns), for layers with several inputs.
  type :: view32_t
    real(real32), pointer, contiguous :: p(:, :) => null()
  end type view32_t
  type :: view64_t
    real(real64), pointer, contiguous :: p(:, :) => null()
  end type view64_t

  type, abstract :: fkb_layer_t
    character(len=:), allocatable :: type_name   !! as in the file, e.g. 'dense'
    character(len=:), allocatable :: name        !! the Keras layer name
    integer(int64) :: n_in = 0, n_out = 0        !! widths of one sample
    integer :: dtype = FKB_FLOAT32               !! the network's precision
    type(fkb_tensor_t), allocatable :: params(:) !! in Keras weight order
    logical :: trainable = .true.                !! Keras' layer.trainable (option trainable=0)
    type(shape_t), allocatable :: in_shapes(:)   !! per-sample shape of each input
    integer(int64), allocatable :: out_shape(:)  !! per-sample output shape (set by the model
                                                 !! after configure unless the layer sets it)
    integer(int64) :: reps = 1                   !! columns per sample (see above)
    integer(int64) :: scratch = 0                !! scratch values per sample for forward_ws
    integer(int64) :: state_size = 0             !! recurrent state values per sample
    logical :: time_distributed = .false.        !! was Keras' TimeDistributed (option kept)
  contains
    procedure(configure_i), deferred :: configure
    procedure(options_i), deferred :: options
    procedure(forward_r32_i), deferred :: forward_r32
    procedure(forward_r64_i), deferred :: forward_r64
    generic :: forward => forward_r32, forward_r64
    procedure :: sample_r32 => layer_sample_r32
    procedure :: sample_r64 => layer_sample_r64
    !> Forward with the layer's randomness switched on (Monte-Carlo dropout), drawn from a
    !> counter-based stream `key`; the default is the plain forward.
    generic :: sample => sample_r32, sample_r64
    procedure :: is_stochastic => layer_is_stochastic
    ! ---- training (see fkb_trainer) ----
    procedure :: supports_training => layer_supports_training
    procedure :: tensor_trainable => layer_tensor_trainable
    procedure :: update_state => layer_update_state
    procedure :: has_state => layer_has_state
    procedure :: penalty => layer_penalty
    procedure :: cache_size => layer_cache_size
    procedure :: train_forward_r32 => layer_train_forward_r32
    procedure :: train_forward_r64 => layer_train_forward_r64
    !> Forward in training mode: like `sample`, also filling `cache` (cache_size x batch) with
    !> what `backward` needs (Dense: the pre-activation; Dropout: the mask).
    generic :: train_forward => train_forward_r32, train_forward_r64
    procedure :: backward_r32 => layer_backward_r32
    procedure :: backward_r64 => layer_backward_r64
    !> Given the layer's input x, output y, cache and dL/dy (dy, may be overwritten): dL/dx into
    !> dx (if need_dx) and the parameter gradients into grads (same layout as params). With
    !> dz_given, dy already is dL/d(pre-activation) (Keras' crossentropy-from-logits shortcut).
    generic :: backward => backward_r32, backward_r64
    procedure :: backward_multi_r32 => layer_backward_multi_r32
    procedure :: backward_multi_r64 => layer_backward_multi_r64
    !> Backward of a layer with several inputs (merge layers): given xs(k)%p (as forward_multi
    !> got them), y, cache and dy, dL/dx_k into dxs(k)%p for each k with need_dx(k). The
    !> default passes input 1 to `backward` (single-input layers).
    generic :: backward_multi => backward_multi_r32, backward_multi_r64
    procedure :: acts_on_last_axis => layer_acts_on_last_axis
    procedure :: min_inputs => layer_min_inputs
    procedure :: max_inputs => layer_max_inputs
    procedure :: forward_multi_r32 => layer_forward_multi_r32
    procedure :: forward_multi_r64 => layer_forward_multi_r64
    !> Forward of a layer with several inputs, xs(k)%p(:, reps*batch) in input order.
    generic :: forward_multi => forward_multi_r32, forward_multi_r64
    procedure :: forward_ws_r32 => layer_forward_ws_r32
    procedure :: forward_ws_r64 => layer_forward_ws_r64
    !> Forward with scratch space ws(scratch*batch) and, for recurrent layers, an optional
    !> state(state_size*batch): the initial state on entry (zero without it), the final one
    !> on return. Used by the network whenever scratch > 0 or state_size > 0.
    generic :: forward_ws => forward_ws_r32, forward_ws_r64
    procedure :: prepare => layer_prepare
    procedure :: is_identity => layer_is_identity
    !> Inference-time fusion of "layer, then an Activation layer" (fkb_plan): a layer that
    !> only applies an activation says which; a layer that can apply one to its own output
    !> says so and runs forward_act.
    procedure :: activation_only => layer_activation_only
    procedure :: splits_batch => layer_splits_batch
    procedure :: absorbs_activation => layer_absorbs_activation
    procedure :: forward_act_r32 => layer_forward_act_r32
    procedure :: forward_act_r64 => layer_forward_act_r64
    generic :: forward_act => forward_act_r32, forward_act_r64
    procedure :: release => layer_release
    procedure :: declare_params
  end type fkb_layer_t

  abstract interface
    subroutine configure_i(self, cfg, stat, msg)
      !! Reads the options (self%n_in is set), sets n_out, declares the expected tensors.
      import :: fkb_layer_t, fkb_config_t
      class(fkb_layer_t), intent(inout) :: self
      type(fkb_config_t), intent(inout) :: cfg
      integer, intent(out) :: stat
      character(len=:), allocatable, intent(inout) :: msg
    end subroutine configure_i
    subroutine options_i(self, cfg)
      !! Writes the options back, as `configure` reads them.
      import :: fkb_layer_t, fkb_config_t
      class(fkb_layer_t), intent(in) :: self
      type(fkb_config_t), intent(inout) :: cfg
    end subroutine options_i
    subroutine forward_r32_i(self, x, y)
      import :: fkb_layer_t, real32
      class(fkb_layer_t), intent(in) :: self
      real(real32), intent(in), contiguous :: x(:, :)
      real(real32), intent(inout), contiguous :: y(:, :)
    end subroutine forward_r32_i
    subroutine forward_r64_i(self, x, y)
      import :: fkb_layer_t, real64
      class(fkb_layer_t), intent(in) :: self
      real(real64), intent(in), contiguous :: x(:, :)
      real(real64), intent(inout), contiguous :: y(:, :)
    end subroutine forward_r64_i
  end interface

contains

  logical function layer_acts_on_last_axis(self)
    !! True for layers applied independently at every position of the leading axes.
    class(fkb_layer_t), intent(in) :: self
    layer_acts_on_last_axis = .false.
  end function layer_acts_on_last_axis

  integer function layer_min_inputs(self)
    class(fkb_layer_t), intent(in) :: self
    layer_min_inputs = 1
  end function layer_min_inputs

  integer function layer_max_inputs(self)
    class(fkb_layer_t), intent(in) :: self
    layer_max_inputs = 1
  end function layer_max_inputs

  subroutine layer_forward_multi_r32(self, xs, y)
    class(fkb_layer_t), intent(in) :: self
    type(view32_t), intent(in) :: xs(:)
    real(real32), intent(inout), contiguous :: y(:, :)
    call self%forward_r32(xs(1)%p, y)
  end subroutine layer_forward_multi_r32

  subroutine layer_forward_multi_r64(self, xs, y)
    class(fkb_layer_t), intent(in) :: self
    type(view64_t), intent(in) :: xs(:)
    real(real64), intent(inout), contiguous :: y(:, :)
    call self%forward_r64(xs(1)%p, y)
  end subroutine layer_forward_multi_r64

  subroutine layer_forward_ws_r32(self, x, y, ws, state)
    class(fkb_layer_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    real(real32), intent(inout), contiguous :: ws(:)
    real(real32), intent(inout), contiguous, optional :: state(:)
    call self%forward_r32(x, y)
  end subroutine layer_forward_ws_r32

  subroutine layer_forward_ws_r64(self, x, y, ws, state)
    class(fkb_layer_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    real(real64), intent(inout), contiguous :: ws(:)
    real(real64), intent(inout), contiguous, optional :: state(:)
    call self%forward_r64(x, y)
  end subroutine layer_forward_ws_r64

  subroutine layer_prepare(self, stat, msg)
    !! Computes constants derived from the tensors; called after every change of them.
    class(fkb_layer_t), intent(inout) :: self
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    stat = FKB_OK
  end subroutine layer_prepare

  logical function layer_is_identity(self)
    !! True for layers that do nothing at inference (Dropout, Flatten): the network skips them.
    class(fkb_layer_t), intent(in) :: self
    layer_is_identity = .false.
  end function layer_is_identity

  logical function layer_splits_batch(self)
    !! True for a layer whose forward_ws may run on slices of a batch at once, one thread each
    !! with its share of the scratch (samples independent, nothing shared but the read-only
    !! layer): the plan executor then threads across the batch (recurrent and Conv1D layers,
    !! whose products are too small per step to thread well inside).
    class(fkb_layer_t), intent(in) :: self
    layer_splits_batch = .false.
  end function layer_splits_batch

  logical function layer_activation_only(self, act)
    !! True (and act set) for a layer whose whole effect is an activation on its input.
    class(fkb_layer_t), intent(in) :: self
    type(fkb_activation_t), intent(out) :: act
    layer_activation_only = .false.
  end function layer_activation_only

  logical function layer_absorbs_activation(self)
    !! True for a layer whose forward_act applies an activation to its output.
    class(fkb_layer_t), intent(in) :: self
    layer_absorbs_activation = .false.
  end function layer_absorbs_activation

  subroutine layer_forward_act_r32(self, x, y, act)
    !! Forward, then act on the output. Only called where absorbs_activation is true; this
    !! default is never reached and computes the same thing in two passes.
    class(fkb_layer_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    type(fkb_activation_t), intent(in) :: act
    call self%forward_r32(x, y)
    call apply_activation(act, size(y, 1, kind=int64), size(y, 2, kind=int64), y)
  end subroutine layer_forward_act_r32

  subroutine layer_forward_act_r64(self, x, y, act)
    class(fkb_layer_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    type(fkb_activation_t), intent(in) :: act
    call self%forward_r64(x, y)
    call apply_activation(act, size(y, 1, kind=int64), size(y, 2, kind=int64), y)
  end subroutine layer_forward_act_r64

  subroutine layer_release(self)
    !! Frees what the layer holds outside Fortran (a C layer's instance, fkb_c_layer). The
    !! network calls it exactly once for each layer it drops: when it is freed or loads another
    !! file, and for the layers of a load that failed. Copies of a layer object made while
    !! loading share what it holds and are never released themselves. Default: nothing.
    class(fkb_layer_t), intent(inout) :: self
  end subroutine layer_release

  subroutine layer_sample_r32(self, x, y, key)
    class(fkb_layer_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    integer(int64), intent(in) :: key
    call self%forward_r32(x, y)
  end subroutine layer_sample_r32

  subroutine layer_sample_r64(self, x, y, key)
    class(fkb_layer_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    integer(int64), intent(in) :: key
    call self%forward_r64(x, y)
  end subroutine layer_sample_r64

  logical function layer_is_stochastic(self)
    !! True for layers that `sample` differently from `forward` (Dropout).
    class(fkb_layer_t), intent(in) :: self
    layer_is_stochastic = .false.
  end function layer_is_stochastic

  logical function layer_supports_training(self)
    !! False for layers without a backward pass yet: training a model with one is refused.
    class(fkb_layer_t), intent(in) :: self
    layer_supports_training = .false.
  end function layer_supports_training

  logical function layer_tensor_trainable(self, k)
    !! Whether the optimizer updates tensor k (moving statistics and frozen layers: no).
    class(fkb_layer_t), intent(in) :: self
    integer, intent(in) :: k
    layer_tensor_trainable = self%trainable .and. k > 0
  end function layer_tensor_trainable

  subroutine layer_penalty(self, k, l1, l2)
    !! Keras' L1/L2 regularization factors of tensor k (loss += l1 sum|w| + l2 sum w^2).
    class(fkb_layer_t), intent(in) :: self
    integer, intent(in) :: k
    real(real64), intent(out) :: l1, l2
    l1 = 0
    l2 = 0
  end subroutine layer_penalty

  logical function layer_has_state(self)
    !! Whether update_state does anything (the trainer then passes it the step's input as
    !! double, a copy the other layers do without). Default: no.
    class(fkb_layer_t), intent(in) :: self
    layer_has_state = .false.
  end function layer_has_state

  subroutine layer_update_state(self, x)
    !! After a training step: update non-trainable state from the step's input x (as double),
    !! e.g. BatchNormalization's moving statistics. Default: nothing.
    class(fkb_layer_t), intent(inout) :: self
    real(real64), intent(in) :: x(:, :)
  end subroutine layer_update_state

  integer(int64) function layer_cache_size(self)
    class(fkb_layer_t), intent(in) :: self
    layer_cache_size = 0
  end function layer_cache_size

  subroutine layer_train_forward_r32(self, x, y, cache, key)
    class(fkb_layer_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :), cache(:, :)
    integer(int64), intent(in) :: key
    call self%sample_r32(x, y, key)
  end subroutine layer_train_forward_r32

  subroutine layer_train_forward_r64(self, x, y, cache, key)
    class(fkb_layer_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :), cache(:, :)
    integer(int64), intent(in) :: key
    call self%sample_r64(x, y, key)
  end subroutine layer_train_forward_r64

  subroutine layer_backward_r32(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(fkb_layer_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real32), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
  end subroutine layer_backward_r32

  subroutine layer_backward_r64(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(fkb_layer_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real64), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
  end subroutine layer_backward_r64

  subroutine layer_backward_multi_r32(self, xs, y, cache, dy, dxs, grads, need_dx)
    class(fkb_layer_t), intent(in) :: self
    type(view32_t), intent(in) :: xs(:)
    real(real32), intent(in), contiguous :: y(:, :), cache(:, :)
    real(real32), intent(inout), contiguous :: dy(:, :)
    type(view32_t), intent(in) :: dxs(:)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx(:)
    call self%backward_r32(xs(1)%p, y, cache, dy, dxs(1)%p, grads, need_dx(1), .false.)
  end subroutine layer_backward_multi_r32

  subroutine layer_backward_multi_r64(self, xs, y, cache, dy, dxs, grads, need_dx)
    class(fkb_layer_t), intent(in) :: self
    type(view64_t), intent(in) :: xs(:)
    real(real64), intent(in), contiguous :: y(:, :), cache(:, :)
    real(real64), intent(inout), contiguous :: dy(:, :)
    type(view64_t), intent(in) :: dxs(:)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx(:)
    call self%backward_r64(xs(1)%p, y, cache, dy, dxs(1)%p, grads, need_dx(1), .false.)
  end subroutine layer_backward_multi_r64

  subroutine declare_params(self, names, shapes)
    !! Declares the tensors the layer expects: names(k) with shape shapes(:, k) (unused
    !! trailing dims < 0). Data is allocated by the loader in the network's precision.
    class(fkb_layer_t), intent(inout) :: self
    character(len=*), intent(in) :: names(:)
    integer(int64), intent(in) :: shapes(:, :)
    integer :: k
    if (allocated(self%params)) deallocate(self%params)
    allocate(self%params(size(names)))
    do k = 1, size(names)
      self%params(k)%name = trim(names(k))
      self%params(k)%shape = pack(shapes(:, k), shapes(:, k) >= 0)
    end do
  end subroutine declare_params

end module fkb_layer
