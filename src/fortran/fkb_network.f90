!! The network a host model loads and runs: `type(fkb_network)`.
!!
!! Concurrency: `predict`, the size queries, `description` and `get_tensor` may be called on
!! one network from many threads at once (each predict claims its own workspace slot);
!! `load`, `save` and `set_tensor` need exclusive access.
module fkb_network_m
  use iso_fortran_env, only: real32, real64, int64
  use iso_c_binding, only: c_null_char, c_loc, c_f_pointer
  use fkb_errors, only: FKB_OK, FKB_ERR_ARGUMENT, FKB_ERR_SHAPE, FKB_ERR_MEMORY, &
                        FKB_ERR_FORMAT, FKB_ERR_LAYER, set_error, report, clear_layer_error, &
                        take_layer_error
  use fkb_tensor, only: FKB_FLOAT32, FKB_FLOAT64
  use fkb_config, only: int_text
  use fkb_model, only: fkb_model_t
  use fkb_io_native, only: has_magic, read_native, write_native
  use fkb_io_legacy, only: read_legacy, write_legacy
  use fkb_blas, only: init_backend
  use fkb_random, only: mix64
  use fkb_trainer, only: fkb_trainer_t, trainer_compile, trainer_step, trainer_record, &
                         trainer_restore, trainer_step_refs, trainer_n_targets, &
                         weighted_loss_spec
  use fkb_loss, only: LOSS_SPARSE_CCE
  use fkb_optimizer, only: slot_t
  use fkb_custom_loss_m, only: fkb_custom_loss
  use fkb_workspace, only: ws_slot, POOL_SIZE, claim_slot, release_slot, reserve
  use fkb_plan, only: fkb_plan_t, loc_t, build_plan, LOC_IN, LOC_OUT
  use fkb_layer, only: fkb_layer_t, view32_t, view64_t
  use omp_lib, only: omp_get_num_threads, omp_get_thread_num, omp_get_max_threads, omp_in_parallel
  use fkb_refs, only: fkb_ref32, fkb_ref64
  use fkb_layer_registry, only: is_builtin
  implicit none
  private
  public :: fkb_network, fkb_rnn_state

  !> Recurrent state carried from one predict call to the next (a host's time loop stepping
  !> an LSTM/GRU/SimpleRNN): pass the same object to every call. It belongs to the caller, so
  !> several threads can step their own states through one network. Its size follows the
  !> batch: a call with another batch size starts again from zero state.
  type :: fkb_rnn_state
    real(real32), allocatable :: s32(:)
    real(real64), allocatable :: s64(:)
    integer(int64) :: batch = 0
  contains
    procedure :: reset => rnn_state_reset
  end type fkb_rnn_state

  !> float64 copies of float32 host arrays for the training calls.
  type :: copies64
    type(fkb_ref64), allocatable :: x(:), t(:)
  contains
    procedure :: from32 => copies_from32
    final :: copies_free
  end type copies64

  type :: fkb_network
    private
    type(fkb_model_t) :: model
    type(fkb_plan_t) :: plan                    !! inference (identities skipped)
    type(fkb_plan_t) :: plan_mc                 !! the same with stochastic layers (MC dropout)
    integer(int64), allocatable :: io_rows(:)   !! values per sample: inputs, then outputs
    integer :: n_graph_in = 0
    logical :: user_layers = .false.            !! has layer types registered by the host
    type(ws_slot), allocatable :: pool(:)
    character(len=:), allocatable :: desc       !! header text + NUL, for the C API
    type(fkb_trainer_t), allocatable :: trainer !! after `compile`
  contains
    procedure :: load => net_load
    procedure :: save => net_save
    procedure :: n_inputs => net_n_inputs
    procedure :: n_outputs => net_n_outputs
    procedure :: input_count => net_input_count
    procedure :: output_count => net_output_count
    procedure :: input_size => net_input_size
    procedure :: output_size => net_output_size
    procedure :: input_shape => net_input_shape
    procedure :: output_shape => net_output_shape
    procedure :: input_name => net_input_name
    procedure :: output_name => net_output_name
    procedure :: is_recurrent => net_is_recurrent
    procedure :: dtype => net_dtype
    procedure :: is_loaded => net_is_loaded
    procedure :: description => net_description
    procedure :: description_c => net_description_c
    procedure :: metadata => net_metadata
    procedure :: n_tensors => net_n_tensors
    procedure :: tensor_size => net_tensor_size
    procedure :: get_tensor => net_get_tensor
    procedure :: set_tensor => net_set_tensor
    procedure :: predict_core => net_predict_core
    procedure :: compile => net_compile
    procedure :: is_compiled => net_is_compiled
    procedure :: set_custom_loss => net_set_custom_loss
    procedure :: iterations => net_iterations
    procedure :: n_targets => net_n_targets
    procedure, private :: net_evaluate, evaluate_refs64, evaluate_refs32
    generic :: evaluate => net_evaluate, evaluate_refs64, evaluate_refs32
    procedure, private :: net_gradients, gradients_refs64, gradients_refs32
    generic :: gradients => net_gradients, gradients_refs64, gradients_refs32
    procedure, private :: train_r64, train_r32, train_refs64, train_refs32
    generic :: train_on_batch => train_r64, train_r32, train_refs64, train_refs32
    procedure, private :: predict_r32_2d, predict_r64_2d, predict_r32_1d, predict_r64_1d
    procedure, private :: contig_r32_2d, contig_r64_2d, contig_r32_1d, contig_r64_1d
    procedure, private :: predict_refs32, predict_refs64
    generic :: predict => predict_r32_2d, predict_r64_2d, predict_r32_1d, predict_r64_1d, &
                          predict_refs32, predict_refs64
    final :: net_final
  end type fkb_network

contains

  subroutine net_load(self, path, stat, errmsg)
    !! Loads a `.fkb` file or a legacy FKB text file. On failure the network is unchanged.
    class(fkb_network), intent(inout) :: self
    character(len=*), intent(in) :: path
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    type(fkb_model_t) :: model
    type(fkb_trainer_t), allocatable :: trainer
    character(len=:), allocatable :: msg
    integer, allocatable :: outs(:)
    integer :: st, i
    msg = ''
    call init_backend()
    if (has_magic(path)) then
      call read_native(path, model, st, msg)
    else
      call read_legacy(path, model, st, msg)
    end if
    if (st == FKB_OK .and. allocated(model%train)) then
      allocate(trainer)
      call trainer_restore(trainer, model, model%train, st, msg)
      if (st /= FKB_OK) msg = "'" // path // "': " // msg
      deallocate(model%train)
    end if
    if (st == FKB_OK) then
      call self%model%release()   ! the layers of the model this one replaces
      self%model = model
      call build_plan(self%model, .false., self%plan)
      call build_plan(self%model, .true., self%plan_mc)
      outs = model%output_values()
      self%io_rows = [(model%value_size(i), i=1, model%n_graph_inputs()), &
                      (model%value_size(outs(i)), i=1, size(outs))]
      self%n_graph_in = model%n_graph_inputs()
      self%user_layers = .not. all([(is_builtin(model%layers(i)%l%type_name), &
                                     i=1, model%n_layers)])
      if (allocated(self%pool)) deallocate(self%pool)
      allocate(self%pool(POOL_SIZE))
      self%desc = model%header() // c_null_char
      ! A new model is compiled only if its file held a training state.
      if (allocated(self%trainer)) deallocate(self%trainer)
      if (allocated(trainer)) call move_alloc(trainer, self%trainer)
    else
      call model%release()        ! layers configured before the failure
    end if
    call report(st, msg, stat, errmsg)
  end subroutine net_load

  impure elemental subroutine net_final(self)
    !! A network that goes away releases its layers (fkb_layer_t%release: a C layer's
    !! `destroy`), once. Do not copy a network by assignment: copies would share those.
    type(fkb_network), intent(inout) :: self
    call self%model%release()
  end subroutine net_final

  subroutine net_save(self, path, stat, errmsg, format)
    !! Writes the network: format 'fkb' (default, bit-exact; with the optimizer state once
    !! compiled, so that training resumes exactly) or 'legacy' (original FKB text).
    class(fkb_network), intent(in) :: self
    character(len=*), intent(in) :: path
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    character(len=*), intent(in), optional :: format
    character(len=:), allocatable :: msg
    integer :: st
    msg = ''
    if (.not. self%is_loaded()) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'the network is not loaded')
    else if (.not. present(format)) then
      call save_native()
    else if (format == 'fkb') then
      call save_native()
    else if (format == 'legacy') then
      call write_legacy(self%model, path, st, msg)
    else
      call set_error(st, msg, FKB_ERR_ARGUMENT, "unknown format '" // format // &
                     "' (expected 'fkb' or 'legacy')")
    end if
    call report(st, msg, stat, errmsg)
  contains
    subroutine save_native()
      ! A compiled network also saves its training state (optimizer, step, slots).
      if (allocated(self%trainer)) then
        call write_native(self%model, path, st, msg, trainer_record(self%trainer))
      else
        call write_native(self%model, path, st, msg)
      end if
    end subroutine save_native
  end subroutine net_save

  pure logical function net_is_loaded(self)
    class(fkb_network), intent(in) :: self
    net_is_loaded = allocated(self%desc)
  end function net_is_loaded

  pure integer(int64) function net_n_inputs(self)
    !! Width of one input sample (0 before a successful load).
    class(fkb_network), intent(in) :: self
    net_n_inputs = self%model%n_in
  end function net_n_inputs

  integer(int64) function net_n_outputs(self)
    !! Width of one output sample (0 before a successful load); the first output's.
    class(fkb_network), intent(in) :: self
    net_n_outputs = 0
    if (allocated(self%desc)) net_n_outputs = self%model%n_out()
  end function net_n_outputs

  integer function net_input_count(self)
    !! Number of inputs of the network (1 for a Sequential model; 0 before a load).
    class(fkb_network), intent(in) :: self
    net_input_count = 0
    if (allocated(self%desc)) net_input_count = self%n_graph_in
  end function net_input_count

  ! The counts and sizes come from io_rows, set at load: every predict through the C API asks
  ! for them, and asking the model allocates its lists of values (two mallocs a query).
  integer function net_output_count(self)
    class(fkb_network), intent(in) :: self
    net_output_count = 0
    if (allocated(self%desc)) net_output_count = size(self%io_rows) - self%n_graph_in
  end function net_output_count

  integer(int64) function net_input_size(self, i)
    !! Values per sample of input i (1-based), or -1 if there is no such input.
    class(fkb_network), intent(in) :: self
    integer, intent(in) :: i
    net_input_size = -1
    if (i >= 1 .and. i <= self%input_count()) net_input_size = self%io_rows(i)
  end function net_input_size

  integer(int64) function net_output_size(self, i)
    !! Values per sample of output i (1-based), or -1 if there is no such output.
    class(fkb_network), intent(in) :: self
    integer, intent(in) :: i
    net_output_size = -1
    if (i >= 1 .and. i <= self%output_count()) net_output_size = self%io_rows(self%n_graph_in + i)
  end function net_output_size

  function net_input_shape(self, i) result(shape)
    !! Keras' per-sample shape of input i (batch axis dropped); empty if no such input.
    class(fkb_network), intent(in) :: self
    integer, intent(in) :: i
    integer(int64), allocatable :: shape(:)
    allocate(shape(0))
    if (i >= 1 .and. i <= self%input_count()) shape = self%model%value_shape(i)
  end function net_input_shape

  function net_output_shape(self, i) result(shape)
    class(fkb_network), intent(in) :: self
    integer, intent(in) :: i
    integer(int64), allocatable :: shape(:)
    integer, allocatable :: outs(:)
    allocate(shape(0))
    if (i < 1 .or. i > self%output_count()) return
    outs = self%model%output_values()
    shape = self%model%value_shape(outs(i))
  end function net_output_shape

  function net_input_name(self, i) result(name)
    class(fkb_network), intent(in) :: self
    integer, intent(in) :: i
    character(len=:), allocatable :: name
    name = ''
    if (i >= 1 .and. i <= self%input_count()) name = self%model%value_name(i)
  end function net_input_name

  function net_output_name(self, i) result(name)
    class(fkb_network), intent(in) :: self
    integer, intent(in) :: i
    character(len=:), allocatable :: name
    integer, allocatable :: outs(:)
    name = ''
    if (i < 1 .or. i > self%output_count()) return
    outs = self%model%output_values()
    name = self%model%value_name(outs(i))
  end function net_output_name

  logical function net_is_recurrent(self)
    !! Whether the network has recurrent layers (whose state an fkb_rnn_state can carry).
    class(fkb_network), intent(in) :: self
    net_is_recurrent = self%plan%state > 0
  end function net_is_recurrent

  subroutine rnn_state_reset(self)
    !! Back to zero state (the next call starts a new sequence).
    class(fkb_rnn_state), intent(inout) :: self
    if (allocated(self%s32)) self%s32 = 0
    if (allocated(self%s64)) self%s64 = 0
  end subroutine rnn_state_reset

  pure integer function net_dtype(self)
    !! FKB_FLOAT32 or FKB_FLOAT64: the precision the network computes in.
    class(fkb_network), intent(in) :: self
    net_dtype = self%model%dtype
  end function net_dtype

  function net_description(self) result(text)
    !! The architecture as `.fkb` header text (docs/format.md).
    class(fkb_network), intent(in) :: self
    character(len=:), allocatable :: text
    text = ''
    if (allocated(self%desc)) text = self%desc(1:len(self%desc) - 1)
  end function net_description

  function net_description_c(self) result(p)
    !! Pointer to the NUL-terminated description owned by the network (for the C API).
    class(fkb_network), intent(in), target :: self
    character(len=:), pointer :: p
    p => null()
    if (allocated(self%desc)) p => self%desc
  end function net_description_c

  function net_metadata(self, key) result(value)
    !! The metadata value stored under key ('' if none).
    class(fkb_network), intent(in) :: self
    character(len=*), intent(in) :: key
    character(len=:), allocatable :: value
    value = self%model%get_meta(key)
  end function net_metadata

  integer(int64) function net_n_tensors(self)
    !! Number of parameter tensors, in file order.
    class(fkb_network), intent(in) :: self
    integer :: i
    net_n_tensors = 0
    do i = 1, self%model%n_layers
      if (allocated(self%model%layers(i)%l%params)) &
        net_n_tensors = net_n_tensors + size(self%model%layers(i)%l%params)
    end do
  end function net_n_tensors

  subroutine locate(self, index, layer, k)
    ! Layer and position of tensor `index` (1-based); layer = 0 if out of range.
    class(fkb_network), intent(in) :: self
    integer(int64), intent(in) :: index
    integer, intent(out) :: layer, k
    integer(int64) :: seen
    seen = 0
    do layer = 1, self%model%n_layers
      if (.not. allocated(self%model%layers(layer)%l%params)) cycle
      k = int(index - seen)
      if (k >= 1 .and. k <= size(self%model%layers(layer)%l%params)) return
      seen = seen + size(self%model%layers(layer)%l%params)
    end do
    layer = 0
    k = 0
  end subroutine locate

  integer(int64) function net_tensor_size(self, index)
    !! Number of values of tensor `index` (1-based), or -1 if there is no such tensor.
    class(fkb_network), intent(in) :: self
    integer(int64), intent(in) :: index
    integer :: layer, k
    call locate(self, index, layer, k)
    net_tensor_size = -1
    if (layer > 0) net_tensor_size = self%model%layers(layer)%l%params(k)%numel()
  end function net_tensor_size

  subroutine net_get_tensor(self, index, values, stat, errmsg)
    !! Copies tensor `index` (1-based) into values (flat, C order of its Keras shape).
    class(fkb_network), intent(in) :: self
    integer(int64), intent(in) :: index
    real(real64), intent(out) :: values(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    character(len=:), allocatable :: msg
    integer :: layer, k, st
    msg = ''
    st = FKB_OK
    call locate(self, index, layer, k)
    if (layer == 0) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'tensor index ' // int_text(index) // &
                     ' out of range 1..' // int_text(self%n_tensors()))
    else
      associate (t => self%model%layers(layer)%l%params(k))
        if (size(values, kind=int64) /= t%numel()) then
          call set_error(st, msg, FKB_ERR_SHAPE, "tensor '" // t%name // "' has " // &
                         int_text(t%numel()) // ' values, got room for ' // &
                         int_text(size(values, kind=int64)))
        else
          values = t%values()
        end if
      end associate
    end if
    call report(st, msg, stat, errmsg)
  end subroutine net_get_tensor

  subroutine net_set_tensor(self, index, values, stat, errmsg)
    !! Overwrites tensor `index` (1-based); rounds to float32 for float32 networks.
    class(fkb_network), intent(inout) :: self
    integer(int64), intent(in) :: index
    real(real64), intent(in) :: values(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    character(len=:), allocatable :: msg
    integer :: layer, k, st
    msg = ''
    st = FKB_OK
    call locate(self, index, layer, k)
    if (layer == 0) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'tensor index ' // int_text(index) // &
                     ' out of range 1..' // int_text(self%n_tensors()))
    else
      associate (l => self%model%layers(layer)%l)
        if (size(values, kind=int64) /= l%params(k)%numel()) then
          call set_error(st, msg, FKB_ERR_SHAPE, "tensor '" // l%params(k)%name // "' has " // &
                         int_text(l%params(k)%numel()) // ' values, got ' // &
                         int_text(size(values, kind=int64)))
        else
          call l%params(k)%assign(values, self%model%dtype)
          call l%prepare(st, msg)
        end if
      end associate
    end if
    call report(st, msg, stat, errmsg)
  end subroutine net_set_tensor

  ! ---- training ----

  subroutine net_compile(self, optimizer, loss, stat, errmsg, custom_loss, loss_weights)
    !! Prepares training: optimizer and loss as Keras names them, with options, e.g.
    !! optimizer='adam learning_rate=1e-3', loss='huber delta=0.5'. Resets the optimizer state.
    !! With custom_loss (an extension of fkb_custom_loss) that loss is used; pass loss='custom'.
    !! Several outputs: one loss for all, or one per output separated by ';' ('mse;huber
    !! delta=0.5'), each item optionally with weight=W; or loss_weights (one per output, Keras'
    !! compile(loss_weights=)): total loss = sum_k W_k loss_k.
    class(fkb_network), intent(inout) :: self
    character(len=*), intent(in) :: optimizer, loss
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    class(fkb_custom_loss), intent(in), optional :: custom_loss
    real(real64), intent(in), optional :: loss_weights(:)
    type(fkb_trainer_t), allocatable :: tr
    character(len=:), allocatable :: msg
    integer :: st
    msg = ''
    allocate(tr)
    if (.not. self%is_loaded()) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'the network is not loaded')
    else if (present(loss_weights)) then
      if (size(loss_weights, kind=int64) /= self%output_count()) then
        call set_error(st, msg, FKB_ERR_ARGUMENT, 'loss_weights: ' // &
                       int_text(size(loss_weights, kind=int64)) // ' weights for ' // &
                       int_text(int(self%output_count(), int64)) // ' outputs')
      else
        call trainer_compile(tr, self%model, optimizer, weighted_loss_spec(loss, loss_weights), &
                             st, msg, custom_loss)
      end if
    else
      call trainer_compile(tr, self%model, optimizer, loss, st, msg, custom_loss)
    end if
    if (st == FKB_OK) call move_alloc(tr, self%trainer)
    call report(st, msg, stat, errmsg)
  end subroutine net_compile

  subroutine net_set_custom_loss(self, custom_loss, stat, errmsg)
    !! Attaches a custom loss to a compiled network without resetting its optimizer state
    !! (e.g. after loading a file saved while training with a custom loss).
    class(fkb_network), intent(inout) :: self
    class(fkb_custom_loss), intent(in) :: custom_loss
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    character(len=:), allocatable :: msg
    integer :: st
    msg = ''
    st = FKB_OK
    if (.not. allocated(self%trainer)) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'call compile first')
    else
      if (allocated(self%trainer%custom)) deallocate(self%trainer%custom)
      allocate(self%trainer%custom, source=custom_loss)
      self%trainer%loss%spec = 'custom'
      self%trainer%loss%id = 0
    end if
    call report(st, msg, stat, errmsg)
  end subroutine net_set_custom_loss

  pure logical function net_is_compiled(self)
    class(fkb_network), intent(in) :: self
    net_is_compiled = allocated(self%trainer)
  end function net_is_compiled

  pure integer(int64) function net_iterations(self)
    !! Optimizer steps taken since `compile`.
    class(fkb_network), intent(in) :: self
    net_iterations = 0
    if (allocated(self%trainer)) net_iterations = self%trainer%opt%iterations
  end function net_iterations

  integer(int64) function net_n_targets(self, output)
    !! Values of y per sample for the compiled loss of output `output` (default 1): its size,
    !! or for sparse categorical crossentropy one class index per row (1 for a rank-1 output).
    class(fkb_network), intent(in) :: self
    integer, intent(in), optional :: output
    integer :: k
    k = 1
    if (present(output)) k = output
    net_n_targets = 0
    if (allocated(self%trainer)) then
      if (k >= 1 .and. k <= size(self%trainer%outs)) &
        net_n_targets = trainer_n_targets(self%trainer, k)
    else if (k == 1) then
      net_n_targets = self%n_outputs()
    else if (k >= 1 .and. k <= self%output_count()) then
      net_n_targets = self%output_size(k)
    end if
  end function net_n_targets

  subroutine train_r64(self, x, y, loss, stat, errmsg, sample_weight)
    !! One optimizer step on a batch x(n_inputs, batch), targets y(n_outputs, batch) (sparse
    !! categorical: y(1, batch) class indices); loss = the batch loss before the step. On any
    !! error (shapes, NaN or infinite loss) the weights and optimizer state are unchanged.
    class(fkb_network), intent(inout) :: self
    real(real64), intent(in) :: x(:, :), y(:, :)
    real(real64), intent(out) :: loss
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    real(real64), intent(in), optional :: sample_weight(:)
    character(len=:), allocatable :: msg
    integer :: st
    msg = ''
    loss = 0
    if (.not. allocated(self%trainer)) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'call compile before training')
    else if (present(sample_weight)) then
      call trainer_step(self%trainer, self%model, x, y, sample_weight, loss, .true., st, msg)
    else
      call trainer_step(self%trainer, self%model, x, y, [real(real64) ::], loss, .true., st, msg)
    end if
    call report(st, msg, stat, errmsg)
  end subroutine train_r64

  subroutine train_r32(self, x, y, loss, stat, errmsg, sample_weight)
    class(fkb_network), intent(inout) :: self
    real(real32), intent(in) :: x(:, :), y(:, :)
    real(real64), intent(out) :: loss
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    real(real64), intent(in), optional :: sample_weight(:)
    call train_r64(self, real(x, real64), real(y, real64), loss, stat, errmsg, sample_weight)
  end subroutine train_r32

  subroutine net_gradients(self, x, y, loss, grads, stat, errmsg, sample_weight)
    !! The loss and its gradient with respect to every tensor (flat, file order, concatenated
    !! into grads, which must hold the sum of the tensor sizes), without changing anything.
    class(fkb_network), intent(inout) :: self
    real(real64), intent(in) :: x(:, :), y(:, :)
    real(real64), intent(out) :: loss
    real(real64), intent(out) :: grads(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    real(real64), intent(in), optional :: sample_weight(:)
    type(slot_t), allocatable :: g(:)
    character(len=:), allocatable :: msg
    integer :: st, k
    integer(int64) :: at, total
    msg = ''
    loss = 0
    total = 0
    do k = 1, int(self%n_tensors())
      total = total + self%tensor_size(int(k, int64))
    end do
    if (.not. allocated(self%trainer)) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'call compile before asking for gradients')
    else if (size(grads, kind=int64) /= total) then
      call set_error(st, msg, FKB_ERR_SHAPE, 'grads must hold ' // int_text(total) // ' values')
    else if (present(sample_weight)) then
      call trainer_step(self%trainer, self%model, x, y, sample_weight, loss, .false., st, msg, g)
    else
      call trainer_step(self%trainer, self%model, x, y, [real(real64) ::], loss, .false., st, &
                        msg, g)
    end if
    if (st == FKB_OK) then
      at = 0
      do k = 1, size(g)
        grads(at + 1:at + size(g(k)%m)) = g(k)%m
        at = at + size(g(k)%m)
      end do
    end if
    call report(st, msg, stat, errmsg)
  end subroutine net_gradients

  subroutine net_evaluate(self, x, y, loss, stat, errmsg, sample_weight)
    !! The compiled loss of the network in inference mode (Dropout off, moving statistics),
    !! computed as Keras' evaluate does; nothing changes.
    class(fkb_network), intent(inout) :: self
    real(real64), intent(in) :: x(:, :), y(:, :)
    real(real64), intent(out) :: loss
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    real(real64), intent(in), optional :: sample_weight(:)
    character(len=:), allocatable :: msg
    integer :: st
    msg = ''
    loss = 0
    if (.not. allocated(self%trainer)) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'call compile before evaluate')
    else if (present(sample_weight)) then
      call trainer_step(self%trainer, self%model, x, y, sample_weight, loss, .false., st, msg, &
                        inference=.true.)
    else
      call trainer_step(self%trainer, self%model, x, y, [real(real64) ::], loss, .false., st, &
                        msg, inference=.true.)
    end if
    call report(st, msg, stat, errmsg)
  end subroutine net_evaluate

  ! Several inputs and outputs (fkb_refs): inputs(k) refers to an array (values of input k per
  ! sample, batch), targets(k) to one (n_targets(k) values per sample, batch).

  subroutine train_refs64(self, inputs, targets, loss, stat, errmsg, sample_weight)
    !! One optimizer step on a batch of a network with several inputs and/or outputs; the
    !! total loss (sum over outputs of weight x loss) before the step. See train_r64.
    class(fkb_network), intent(inout) :: self
    type(fkb_ref64), intent(in) :: inputs(:), targets(:)
    real(real64), intent(out) :: loss
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    real(real64), intent(in), optional :: sample_weight(:)
    real(real64) :: none(0)
    call refs_core(self, 1, inputs, targets, loss, none, stat, errmsg, sample_weight)
  end subroutine train_refs64

  subroutine train_refs32(self, inputs, targets, loss, stat, errmsg, sample_weight)
    class(fkb_network), intent(inout) :: self
    type(fkb_ref32), intent(in) :: inputs(:), targets(:)
    real(real64), intent(out) :: loss
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    real(real64), intent(in), optional :: sample_weight(:)
    type(copies64) :: c
    real(real64) :: none(0)
    call c%from32(inputs, targets)
    call refs_core(self, 1, c%x, c%t, loss, none, stat, errmsg, sample_weight)
  end subroutine train_refs32

  subroutine evaluate_refs64(self, inputs, targets, loss, stat, errmsg, sample_weight)
    !! The compiled loss in inference mode for several inputs/outputs; nothing changes.
    class(fkb_network), intent(inout) :: self
    type(fkb_ref64), intent(in) :: inputs(:), targets(:)
    real(real64), intent(out) :: loss
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    real(real64), intent(in), optional :: sample_weight(:)
    real(real64) :: none(0)
    call refs_core(self, 3, inputs, targets, loss, none, stat, errmsg, sample_weight)
  end subroutine evaluate_refs64

  subroutine evaluate_refs32(self, inputs, targets, loss, stat, errmsg, sample_weight)
    class(fkb_network), intent(inout) :: self
    type(fkb_ref32), intent(in) :: inputs(:), targets(:)
    real(real64), intent(out) :: loss
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    real(real64), intent(in), optional :: sample_weight(:)
    type(copies64) :: c
    real(real64) :: none(0)
    call c%from32(inputs, targets)
    call refs_core(self, 3, c%x, c%t, loss, none, stat, errmsg, sample_weight)
  end subroutine evaluate_refs32

  subroutine gradients_refs64(self, inputs, targets, loss, grads, stat, errmsg, sample_weight)
    !! The loss and its gradients (as net_gradients) for several inputs/outputs.
    class(fkb_network), intent(inout) :: self
    type(fkb_ref64), intent(in) :: inputs(:), targets(:)
    real(real64), intent(out) :: loss
    real(real64), intent(out) :: grads(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    real(real64), intent(in), optional :: sample_weight(:)
    call refs_core(self, 2, inputs, targets, loss, grads, stat, errmsg, sample_weight)
  end subroutine gradients_refs64

  subroutine gradients_refs32(self, inputs, targets, loss, grads, stat, errmsg, sample_weight)
    class(fkb_network), intent(inout) :: self
    type(fkb_ref32), intent(in) :: inputs(:), targets(:)
    real(real64), intent(out) :: loss
    real(real64), intent(out) :: grads(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    real(real64), intent(in), optional :: sample_weight(:)
    type(copies64) :: c
    call c%from32(inputs, targets)
    call refs_core(self, 2, c%x, c%t, loss, grads, stat, errmsg, sample_weight)
  end subroutine gradients_refs32

  subroutine refs_core(self, mode, xs, ts, loss, grads, stat, errmsg, sample_weight)
    ! mode 1: train_on_batch, 2: gradients (into grads), 3: evaluate.
    class(fkb_network), intent(inout) :: self
    integer, intent(in) :: mode
    type(fkb_ref64), intent(in) :: xs(:), ts(:)
    real(real64), intent(out) :: loss
    real(real64), intent(out) :: grads(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    real(real64), intent(in), optional :: sample_weight(:)
    type(slot_t), allocatable :: g(:)
    character(len=:), allocatable :: msg
    real(real64) :: none(0)
    integer :: st, k
    integer(int64) :: at, total
    msg = ''
    loss = 0
    st = FKB_OK
    total = 0
    if (mode == 2) then
      do k = 1, int(self%n_tensors())
        total = total + self%tensor_size(int(k, int64))
      end do
    end if
    if (.not. allocated(self%trainer)) then
      select case (mode)
      case (1); call set_error(st, msg, FKB_ERR_ARGUMENT, 'call compile before training')
      case (2); call set_error(st, msg, FKB_ERR_ARGUMENT, 'call compile before asking for &
                               &gradients')
      case default; call set_error(st, msg, FKB_ERR_ARGUMENT, 'call compile before evaluate')
      end select
    else if (mode == 2 .and. size(grads, kind=int64) /= total) then
      call set_error(st, msg, FKB_ERR_SHAPE, 'grads must hold ' // int_text(total) // ' values')
    else if (present(sample_weight)) then
      call trainer_step_refs(self%trainer, self%model, xs, ts, sample_weight, loss, mode == 1, &
                             st, msg, g, inference=mode == 3)
    else
      call trainer_step_refs(self%trainer, self%model, xs, ts, none, loss, mode == 1, st, msg, &
                             g, inference=mode == 3)
    end if
    if (st == FKB_OK .and. mode == 2) then
      at = 0
      do k = 1, size(g)
        grads(at + 1:at + size(g(k)%m)) = g(k)%m
        at = at + size(g(k)%m)
      end do
    end if
    call report(st, msg, stat, errmsg)
  end subroutine refs_core

  ! ---- inference ----

  ! The public predict takes arrays of any layout. Contiguous arrays (the normal case) reach
  ! the contig_* routines as they are; a strided section is packed by the compiler on the way
  ! (and y unpacked after). This also sidesteps a gfortran 12 bug: an ASSOCIATE name bound to a
  ! strided section, passed straight to a CONTIGUOUS dummy, arrived unpacked (wrong results).

  subroutine predict_r32_2d(self, x, y, stat, errmsg, dropout_seed, state)
    !! y(n_outputs, batch) = network(x(n_inputs, batch)), real32 host arrays. With
    !! `dropout_seed`, Dropout layers are active (Monte-Carlo dropout) with masks drawn from
    !! that seed: the same seed gives the same masks. With `state`, recurrent layers start
    !! from the state the previous call left there (see fkb_rnn_state).
    class(fkb_network), intent(inout) :: self
    real(real32), intent(in), target :: x(:, :)
    real(real32), intent(inout), target :: y(:, :)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    integer(int64), intent(in), optional :: dropout_seed
    type(fkb_rnn_state), intent(inout), optional :: state
    real(real32), pointer, contiguous :: xp(:, :), yp(:, :)
    if (is_contiguous(x) .and. is_contiguous(y)) then   ! no pack/unpack calls
      call c_f_pointer(c_loc(x), xp, shape(x))
      call c_f_pointer(c_loc(y), yp, shape(y))
      call self%contig_r32_2d(xp, yp, stat, errmsg, dropout_seed, state)
    else
      call self%contig_r32_2d(x, y, stat, errmsg, dropout_seed, state)
    end if
  end subroutine predict_r32_2d

  subroutine predict_r64_2d(self, x, y, stat, errmsg, dropout_seed, state)
    !! As above with real64 host arrays (the model still computes in its own precision).
    class(fkb_network), intent(inout) :: self
    real(real64), intent(in), target :: x(:, :)
    real(real64), intent(inout), target :: y(:, :)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    integer(int64), intent(in), optional :: dropout_seed
    type(fkb_rnn_state), intent(inout), optional :: state
    real(real64), pointer, contiguous :: xp(:, :), yp(:, :)
    if (is_contiguous(x) .and. is_contiguous(y)) then   ! no pack/unpack calls
      call c_f_pointer(c_loc(x), xp, shape(x))
      call c_f_pointer(c_loc(y), yp, shape(y))
      call self%contig_r64_2d(xp, yp, stat, errmsg, dropout_seed, state)
    else
      call self%contig_r64_2d(x, y, stat, errmsg, dropout_seed, state)
    end if
  end subroutine predict_r64_2d

  subroutine predict_r32_1d(self, x, y, stat, errmsg, state)
    !! One sample: y(n_outputs) = network(x(n_inputs)).
    class(fkb_network), intent(inout) :: self
    real(real32), intent(in), target :: x(:)
    real(real32), intent(inout), target :: y(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    type(fkb_rnn_state), intent(inout), optional :: state
    real(real32), pointer, contiguous :: xp(:), yp(:)
    if (is_contiguous(x) .and. is_contiguous(y)) then   ! no pack/unpack calls
      call c_f_pointer(c_loc(x), xp, shape(x))
      call c_f_pointer(c_loc(y), yp, shape(y))
      call self%contig_r32_1d(xp, yp, stat, errmsg, state)
    else
      call self%contig_r32_1d(x, y, stat, errmsg, state)
    end if
  end subroutine predict_r32_1d

  subroutine predict_r64_1d(self, x, y, stat, errmsg, state)
    class(fkb_network), intent(inout) :: self
    real(real64), intent(in), target :: x(:)
    real(real64), intent(inout), target :: y(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    type(fkb_rnn_state), intent(inout), optional :: state
    real(real64), pointer, contiguous :: xp(:), yp(:)
    if (is_contiguous(x) .and. is_contiguous(y)) then   ! no pack/unpack calls
      call c_f_pointer(c_loc(x), xp, shape(x))
      call c_f_pointer(c_loc(y), yp, shape(y))
      call self%contig_r64_1d(xp, yp, stat, errmsg, state)
    else
      call self%contig_r64_1d(x, y, stat, errmsg, state)
    end if
  end subroutine predict_r64_1d

  subroutine contig_r32_2d(self, x, y, stat, errmsg, dropout_seed, state)
    !! y(n_outputs, batch) = network(x(n_inputs, batch)), real32 host arrays. With
    !! `dropout_seed`, Dropout layers are active (Monte-Carlo dropout) with masks drawn from
    !! that seed: the same seed gives the same masks. With `state`, recurrent layers start
    !! from the state the previous call left there (see fkb_rnn_state).
    class(fkb_network), intent(inout) :: self
    real(real32), intent(in), contiguous, target :: x(:, :)
    real(real32), intent(inout), contiguous, target :: y(:, :)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    integer(int64), intent(in), optional :: dropout_seed
    type(fkb_rnn_state), intent(inout), optional :: state
    type(fkb_ref32) :: xr(1), yr(1)
    character(len=:), allocatable :: msg
    integer :: st
    xr(1) = fkb_ref32(null(), size(x, 1, int64), size(x, 2, int64))
    xr(1)%p(1:size(x)) => x
    yr(1) = fkb_ref32(null(), size(y, 1, int64), size(y, 2, int64))
    yr(1)%p(1:size(y)) => y
    call self%predict_core(st, msg, xs32=xr, ys32=yr, key=dropout_seed, state=state)
    call report(st, msg, stat, errmsg)
  end subroutine contig_r32_2d

  subroutine contig_r64_2d(self, x, y, stat, errmsg, dropout_seed, state)
    !! As above with real64 host arrays (the model still computes in its own precision).
    class(fkb_network), intent(inout) :: self
    real(real64), intent(in), contiguous, target :: x(:, :)
    real(real64), intent(inout), contiguous, target :: y(:, :)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    integer(int64), intent(in), optional :: dropout_seed
    type(fkb_rnn_state), intent(inout), optional :: state
    type(fkb_ref64) :: xr(1), yr(1)
    character(len=:), allocatable :: msg
    integer :: st
    xr(1) = fkb_ref64(null(), size(x, 1, int64), size(x, 2, int64))
    xr(1)%p(1:size(x)) => x
    yr(1) = fkb_ref64(null(), size(y, 1, int64), size(y, 2, int64))
    yr(1)%p(1:size(y)) => y
    call self%predict_core(st, msg, xs64=xr, ys64=yr, key=dropout_seed, state=state)
    call report(st, msg, stat, errmsg)
  end subroutine contig_r64_2d

  subroutine contig_r32_1d(self, x, y, stat, errmsg, state)
    !! One sample: y(n_outputs) = network(x(n_inputs)).
    class(fkb_network), intent(inout) :: self
    real(real32), intent(in), contiguous, target :: x(:)
    real(real32), intent(inout), contiguous, target :: y(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    type(fkb_rnn_state), intent(inout), optional :: state
    type(fkb_ref32) :: xr(1), yr(1)
    character(len=:), allocatable :: msg
    integer :: st
    xr(1) = fkb_ref32(x, size(x, kind=int64), 1_int64)
    yr(1) = fkb_ref32(y, size(y, kind=int64), 1_int64)
    call self%predict_core(st, msg, xs32=xr, ys32=yr, state=state)
    call report(st, msg, stat, errmsg)
  end subroutine contig_r32_1d

  subroutine contig_r64_1d(self, x, y, stat, errmsg, state)
    class(fkb_network), intent(inout) :: self
    real(real64), intent(in), contiguous, target :: x(:)
    real(real64), intent(inout), contiguous, target :: y(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    type(fkb_rnn_state), intent(inout), optional :: state
    type(fkb_ref64) :: xr(1), yr(1)
    character(len=:), allocatable :: msg
    integer :: st
    xr(1) = fkb_ref64(x, size(x, kind=int64), 1_int64)
    yr(1) = fkb_ref64(y, size(y, kind=int64), 1_int64)
    call self%predict_core(st, msg, xs64=xr, ys64=yr, state=state)
    call report(st, msg, stat, errmsg)
  end subroutine contig_r64_1d

  subroutine predict_refs32(self, inputs, outputs, stat, errmsg, dropout_seed, state)
    !! Several inputs and outputs (fkb_refs): inputs(k) refers to an array (values of input k
    !! per sample, batch), outputs(k) to one (values of output k per sample, batch); all with
    !! the same batch size. Shapes are the networks' input_size/output_size.
    class(fkb_network), intent(inout) :: self
    type(fkb_ref32), intent(in) :: inputs(:), outputs(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    integer(int64), intent(in), optional :: dropout_seed
    type(fkb_rnn_state), intent(inout), optional :: state
    character(len=:), allocatable :: msg
    integer :: st
    call self%predict_core(st, msg, xs32=inputs, ys32=outputs, key=dropout_seed, state=state)
    call report(st, msg, stat, errmsg)
  end subroutine predict_refs32

  subroutine predict_refs64(self, inputs, outputs, stat, errmsg, dropout_seed, state)
    class(fkb_network), intent(inout) :: self
    type(fkb_ref64), intent(in) :: inputs(:), outputs(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    integer(int64), intent(in), optional :: dropout_seed
    type(fkb_rnn_state), intent(inout), optional :: state
    character(len=:), allocatable :: msg
    integer :: st
    call self%predict_core(st, msg, xs64=inputs, ys64=outputs, key=dropout_seed, state=state)
    call report(st, msg, stat, errmsg)
  end subroutine predict_refs64

  subroutine net_predict_core(self, st, msg, xs32, xs64, ys32, ys64, key, state)
    !! Checks the shapes, claims a workspace and runs the plan. Exactly one of xs32/xs64 and
    !! one of ys32/ys64 is present. Host arrays of the model's precision are used in place:
    !! the layers reading an input read the host's array, the layers giving an output write
    !! into the host's array; arrays of the other precision are converted through the slot.
    class(fkb_network), intent(inout), target :: self
    integer, intent(out) :: st
    character(len=:), allocatable, intent(inout) :: msg
    type(fkb_ref32), intent(in), optional :: xs32(:), ys32(:)
    type(fkb_ref64), intent(in), optional :: xs64(:), ys64(:)
    integer(int64), intent(in), optional :: key   !! Monte-Carlo dropout stream
    type(fkb_rnn_state), intent(inout), optional :: state
    type(ws_slot), target :: spare
    type(ws_slot), pointer :: slot
    type(fkb_plan_t), pointer :: plan
    integer(int64) :: n, conv_in, conv_out, at
    integer :: islot, ni, no, k
    logical :: ok, f64, in64, out64
    st = FKB_OK
    if (.not. allocated(self%desc)) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'the network is not loaded')
      return
    end if
    ni = self%n_graph_in
    no = size(self%io_rows) - ni
    in64 = present(xs64)
    out64 = present(ys64)
    if (in64) then
      k = size(xs64)
    else
      k = size(xs32)
    end if
    if (k /= ni) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'the network has ' // int_text(int(ni, int64)) &
                     // ' input(s), got ' // int_text(int(k, int64)) // ' array(s)')
      return
    end if
    if (out64) then
      k = size(ys64)
    else
      k = size(ys32)
    end if
    if (k /= no) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'the network has ' // int_text(int(no, int64)) &
                     // ' output(s), got ' // int_text(int(k, int64)) // ' array(s)')
      return
    end if
    if (in64) then
      n = xs64(1)%cols
    else
      n = xs32(1)%cols
    end if
    if (n < 1) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'batch size must be at least 1, got ' // &
                     int_text(n))
      return
    end if
    conv_in = 0
    conv_out = 0
    f64 = self%model%dtype == FKB_FLOAT64
    associate (rows => self%io_rows)
    do k = 1, ni
      if (in64) then
        ok = check(xs64(k)%rows, xs64(k)%cols, associated(xs64(k)%p), rows(k), 'input', k)
      else
        ok = check(xs32(k)%rows, xs32(k)%cols, associated(xs32(k)%p), rows(k), 'input', k)
      end if
      if (.not. ok) return
      if (in64 .neqv. f64) conv_in = conv_in + rows(k) * n
    end do
    do k = 1, no
      if (out64) then
        ok = check(ys64(k)%rows, ys64(k)%cols, associated(ys64(k)%p), rows(ni + k), 'output', k)
      else
        ok = check(ys32(k)%rows, ys32(k)%cols, associated(ys32(k)%p), rows(ni + k), 'output', k)
      end if
      if (.not. ok) return
      if (out64 .neqv. f64) conv_out = conv_out + rows(ni + k) * n
    end do
    if (present(key)) then
      plan => self%plan_mc
    else
      plan => self%plan
    end if
    islot = claim_slot(self%pool)
    if (islot > 0) then
      slot => self%pool(islot)
    else
      slot => spare
    end if
    call reserve(slot, self%model%dtype, (plan%values + plan%scratch) * n, conv_in, conv_out, &
                 plan%max_src, ni, no, ok)
    if (ok .and. present(state) .and. plan%state > 0) call fit_state(state, ok)
    if (.not. ok) then
      if (islot > 0) call release_slot(slot)
      call set_error(st, msg, FKB_ERR_MEMORY, 'cannot allocate the workspace for a batch of ' &
                     // int_text(n))
      return
    end if
    ! Only host-registered layers can report failures (fkb_layer_fail).
    if (self%user_layers) call clear_layer_error()
    if (f64) then
      at = 0
      do k = 1, ni
        if (in64) then
          slot%x64(k)%p => xs64(k)%p(1:rows(k) * n)
        else
          slot%x64(k)%p => slot%in64(at + 1:at + rows(k) * n)
          slot%x64(k)%p = real(xs32(k)%p(1:rows(k) * n), real64)
          at = at + rows(k) * n
        end if
      end do
      at = 0
      do k = 1, no
        if (out64) then
          slot%y64(k)%p => ys64(k)%p(1:rows(ni + k) * n)
        else
          slot%y64(k)%p => slot%out64(at + 1:at + rows(ni + k) * n)
          at = at + rows(ni + k) * n
        end if
        slot%y64(k)%rows = rows(ni + k)
      end do
      if (present(state) .and. plan%state > 0) then
        call run_r64(self, plan, slot%w64, slot%x64, slot%y64, slot%v64, n, key, state%s64)
      else
        call run_r64(self, plan, slot%w64, slot%x64, slot%y64, slot%v64, n, key)
      end if
      if (.not. out64) then
        do k = 1, no
          ys32(k)%p(1:rows(ni + k) * n) = real(slot%y64(k)%p, real32)
        end do
      end if
    else
      at = 0
      do k = 1, ni
        if (.not. in64) then
          slot%x32(k)%p => xs32(k)%p(1:rows(k) * n)
        else
          slot%x32(k)%p => slot%in32(at + 1:at + rows(k) * n)
          slot%x32(k)%p = real(xs64(k)%p(1:rows(k) * n), real32)
          at = at + rows(k) * n
        end if
      end do
      at = 0
      do k = 1, no
        if (.not. out64) then
          slot%y32(k)%p => ys32(k)%p(1:rows(ni + k) * n)
        else
          slot%y32(k)%p => slot%out32(at + 1:at + rows(ni + k) * n)
          at = at + rows(ni + k) * n
        end if
        slot%y32(k)%rows = rows(ni + k)
      end do
      if (present(state) .and. plan%state > 0) then
        call run_r32(self, plan, slot%w32, slot%x32, slot%y32, slot%v32, n, key, state%s32)
      else
        call run_r32(self, plan, slot%w32, slot%x32, slot%y32, slot%v32, n, key)
      end if
      if (out64) then
        do k = 1, no
          ys64(k)%p(1:rows(ni + k) * n) = real(slot%y32(k)%p, real64)
        end do
      end if
    end if
    end associate
    if (islot > 0) call release_slot(slot)
    if (self%user_layers) then
      if (take_layer_error(msg)) st = FKB_ERR_LAYER
    end if

  contains

    logical function check(r, c, assoc, want, what, idx)
      integer(int64), intent(in) :: r, c, want
      logical, intent(in) :: assoc
      character(len=*), intent(in) :: what
      integer, intent(in) :: idx
      check = assoc .and. r == want .and. c == n
      if (.not. check) call shape_error(r, c, assoc, want, what, idx)
    end function check

    subroutine shape_error(r, c, assoc, want, what, idx)
      integer(int64), intent(in) :: r, c, want
      logical, intent(in) :: assoc
      character(len=*), intent(in) :: what
      integer, intent(in) :: idx
      character(len=:), allocatable :: label
      label = what
      if (merge(ni, no, what == 'input') > 1) label = what // ' ' // int_text(int(idx, int64))
      if (.not. assoc) then
        call set_error(st, msg, FKB_ERR_ARGUMENT, label // ': no array given (fkb_ref needs a ' &
                       // 'contiguous array with the TARGET attribute)')
      else if (r /= want) then
        call set_error(st, msg, FKB_ERR_SHAPE, label // ' has ' // int_text(r) // &
                       ' values per sample, the network ' // merge('takes', 'gives', &
                       what == 'input') // ' ' // int_text(want))
      else if (c /= n) then
        call set_error(st, msg, FKB_ERR_SHAPE, label // ' holds ' // int_text(c) // &
                       ' samples; every input and output must hold the batch size ' // &
                       int_text(n))
      end if
    end subroutine shape_error

    subroutine fit_state(s, ok2)
      ! A state of another batch size (or none yet) starts again from zero.
      type(fkb_rnn_state), intent(inout) :: s
      logical, intent(out) :: ok2
      integer :: ios
      ok2 = .true.
      if (s%batch == n) then
        if (f64 .and. allocated(s%s64)) then
          if (size(s%s64, kind=int64) == plan%state * n) return
        else if (.not. f64 .and. allocated(s%s32)) then
          if (size(s%s32, kind=int64) == plan%state * n) return
        end if
      end if
      if (allocated(s%s32)) deallocate(s%s32)
      if (allocated(s%s64)) deallocate(s%s64)
      if (f64) then
        allocate(s%s64(plan%state * n), stat=ios)
        if (ios == 0) s%s64 = 0
      else
        allocate(s%s32(plan%state * n), stat=ios)
        if (ios == 0) s%s32 = 0
      end if
      ok2 = ios == 0
      s%batch = n
    end subroutine fit_state

  end subroutine net_predict_core

  subroutine copies_free(self)
    type(copies64), intent(inout) :: self
    integer :: k
    if (allocated(self%x)) then
      do k = 1, size(self%x)
        if (associated(self%x(k)%p)) deallocate(self%x(k)%p)
      end do
    end if
    if (allocated(self%t)) then
      do k = 1, size(self%t)
        if (associated(self%t(k)%p)) deallocate(self%t(k)%p)
      end do
    end if
  end subroutine copies_free

  subroutine copies_from32(self, xs, ts)
    class(copies64), intent(inout), target :: self
    type(fkb_ref32), intent(in) :: xs(:), ts(:)
    call copy(xs, self%x)
    call copy(ts, self%t)
  contains
    subroutine copy(r32, r64)
      type(fkb_ref32), intent(in) :: r32(:)
      type(fkb_ref64), allocatable, intent(out) :: r64(:)
      integer :: k
        real(real64), pointer, contiguous :: p(:)
      allocate(r64(size(r32)))
      do k = 1, size(r32)
        r64(k)%rows = r32(k)%rows
        r64(k)%cols = r32(k)%cols
        if (associated(r32(k)%p)) then
          allocate(p(size(r32(k)%p)))   ! freed with the refs' owner below
          p = real(r32(k)%p, real64)
          r64(k)%p => p
        end if
      end do
    end subroutine copy
  end subroutine copies_from32

  subroutine run_r32(self, plan, w, xs, ys, views, n, key, state)
    integer, parameter :: wp = real32
    type(fkb_network), intent(in) :: self
    type(fkb_plan_t), intent(in) :: plan
    real(wp), intent(inout), contiguous, target :: w(:)
    type(fkb_ref32), intent(in) :: xs(:), ys(:)
    type(view32_t), intent(inout) :: views(:)
    integer(int64), intent(in) :: n
    integer(int64), intent(in), optional :: key
    real(wp), intent(inout), contiguous, optional :: state(:)
    include 'kernels/run_plan.inc'
  end subroutine run_r32

  subroutine run_r64(self, plan, w, xs, ys, views, n, key, state)
    integer, parameter :: wp = real64
    type(fkb_network), intent(in) :: self
    type(fkb_plan_t), intent(in) :: plan
    real(wp), intent(inout), contiguous, target :: w(:)
    type(fkb_ref64), intent(in) :: xs(:), ys(:)
    type(view64_t), intent(inout) :: views(:)
    integer(int64), intent(in) :: n
    integer(int64), intent(in), optional :: key
    real(wp), intent(inout), contiguous, optional :: state(:)
    include 'kernels/run_plan.inc'
  end subroutine run_r64

end module fkb_network_m
