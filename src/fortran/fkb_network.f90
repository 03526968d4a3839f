!! The network a host model loads and runs: `type(fkb_network)`.
!!
!! Concurrency: `predict`, the size queries, `description` and `get_tensor` may be called on
!! one network from many threads at once (each predict claims its own workspace slot);
!! `load`, `save` and `set_tensor` need exclusive access.
module fkb_network_m
  use iso_fortran_env, only: real32, real64, int64
  use iso_c_binding, only: c_null_char
  use fkb_errors, only: FKB_OK, FKB_ERR_ARGUMENT, FKB_ERR_SHAPE, FKB_ERR_MEMORY, &
                        FKB_ERR_FORMAT, set_error, report
  use fkb_tensor, only: FKB_FLOAT32, FKB_FLOAT64
  use fkb_config, only: int_text
  use fkb_model, only: fkb_model_t
  use fkb_io_native, only: has_magic, read_native, write_native
  use fkb_io_legacy, only: read_legacy, write_legacy
  use fkb_blas, only: init_backend
  use fkb_random, only: mix64
  use fkb_trainer, only: fkb_trainer_t, trainer_compile, trainer_step, trainer_record, &
                         trainer_restore
  use fkb_loss, only: LOSS_SPARSE_CCE
  use fkb_optimizer, only: slot_t
  use fkb_custom_loss_m, only: fkb_custom_loss
  use fkb_workspace, only: ws_slot, POOL_SIZE, claim_slot, release_slot, reserve
  implicit none
  private
  public :: fkb_network

  type :: fkb_network
    private
    type(fkb_model_t) :: model
    integer, allocatable :: run(:)              !! layers that compute (identities skipped)
    integer, allocatable :: run_mc(:)           !! the same plus stochastic ones (MC dropout)
    integer(int64) :: max_width = 0
    type(ws_slot), allocatable :: pool(:)
    character(len=:), allocatable :: desc       !! header text + NUL, for the C API
    type(fkb_trainer_t), allocatable :: trainer !! after `compile`
  contains
    procedure :: load => net_load
    procedure :: save => net_save
    procedure :: n_inputs => net_n_inputs
    procedure :: n_outputs => net_n_outputs
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
    procedure :: evaluate => net_evaluate
    procedure :: gradients => net_gradients
    procedure, private :: train_r64, train_r32
    generic :: train_on_batch => train_r64, train_r32
    procedure, private :: predict_r32_2d, predict_r64_2d, predict_r32_1d, predict_r64_1d
    generic :: predict => predict_r32_2d, predict_r64_2d, predict_r32_1d, predict_r64_1d
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
      self%model = model
      self%run = pack([(i, i=1, model%n_layers)], &
                      [(.not. model%layers(i)%l%is_identity(), i=1, model%n_layers)])
      self%run_mc = pack([(i, i=1, model%n_layers)], &
                         [(.not. model%layers(i)%l%is_identity() .or. &
                           model%layers(i)%l%is_stochastic(), i=1, model%n_layers)])
      self%max_width = model%n_in
      do i = 1, model%n_layers
        self%max_width = max(self%max_width, model%layers(i)%l%n_out)
      end do
      if (allocated(self%pool)) deallocate(self%pool)
      allocate(self%pool(POOL_SIZE))
      self%desc = model%header() // c_null_char
      ! A new model is compiled only if its file held a training state.
      if (allocated(self%trainer)) deallocate(self%trainer)
      if (allocated(trainer)) call move_alloc(trainer, self%trainer)
    end if
    call report(st, msg, stat, errmsg)
  end subroutine net_load

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

  pure integer(int64) function net_n_outputs(self)
    !! Width of one output sample (0 before a successful load).
    class(fkb_network), intent(in) :: self
    net_n_outputs = 0
    if (allocated(self%desc)) net_n_outputs = self%model%n_out()
  end function net_n_outputs

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

  subroutine net_compile(self, optimizer, loss, stat, errmsg, custom_loss)
    !! Prepares training: optimizer and loss as Keras names them, with options, e.g.
    !! optimizer='adam learning_rate=1e-3', loss='huber delta=0.5'. Resets the optimizer state.
    !! With custom_loss (an extension of fkb_custom_loss) that loss is used; pass loss='custom'.
    class(fkb_network), intent(inout) :: self
    character(len=*), intent(in) :: optimizer, loss
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    class(fkb_custom_loss), intent(in), optional :: custom_loss
    type(fkb_trainer_t), allocatable :: tr
    character(len=:), allocatable :: msg
    integer :: st
    msg = ''
    allocate(tr)
    if (.not. self%is_loaded()) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'the network is not loaded')
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

  pure integer(int64) function net_n_targets(self)
    !! Values of y per sample for the compiled loss: n_outputs, or 1 (a class index) for
    !! sparse categorical crossentropy.
    class(fkb_network), intent(in) :: self
    net_n_targets = self%n_outputs()
    if (allocated(self%trainer)) then
      if (self%trainer%loss%id == LOSS_SPARSE_CCE) net_n_targets = 1
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

  ! ---- inference ----

  subroutine predict_r32_2d(self, x, y, stat, errmsg, dropout_seed)
    !! y(n_outputs, batch) = network(x(n_inputs, batch)), real32 host arrays. With
    !! `dropout_seed`, Dropout layers are active (Monte-Carlo dropout) with masks drawn from
    !! that seed: the same seed gives the same masks.
    class(fkb_network), intent(inout) :: self
    real(real32), intent(in), contiguous, target :: x(:, :)
    real(real32), intent(inout), contiguous, target :: y(:, :)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    integer(int64), intent(in), optional :: dropout_seed
    character(len=:), allocatable :: msg
    integer :: st
    call self%predict_core(size(x, 1, int64), size(y, 1, int64), size(x, 2, int64), &
                           size(y, 2, int64), st, msg, x32=x, y32=y, key=dropout_seed)
    call report(st, msg, stat, errmsg)
  end subroutine predict_r32_2d

  subroutine predict_r64_2d(self, x, y, stat, errmsg, dropout_seed)
    !! As above with real64 host arrays (the model still computes in its own precision).
    class(fkb_network), intent(inout) :: self
    real(real64), intent(in), contiguous, target :: x(:, :)
    real(real64), intent(inout), contiguous, target :: y(:, :)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    integer(int64), intent(in), optional :: dropout_seed
    character(len=:), allocatable :: msg
    integer :: st
    call self%predict_core(size(x, 1, int64), size(y, 1, int64), size(x, 2, int64), &
                           size(y, 2, int64), st, msg, x64=x, y64=y, key=dropout_seed)
    call report(st, msg, stat, errmsg)
  end subroutine predict_r64_2d

  subroutine predict_r32_1d(self, x, y, stat, errmsg)
    !! One sample: y(n_outputs) = network(x(n_inputs)).
    class(fkb_network), intent(inout) :: self
    real(real32), intent(in), contiguous, target :: x(:)
    real(real32), intent(inout), contiguous, target :: y(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    real(real32), pointer, contiguous :: x2(:, :), y2(:, :)
    character(len=:), allocatable :: msg
    integer :: st
    x2(1:size(x), 1:1) => x
    y2(1:size(y), 1:1) => y
    call self%predict_core(size(x, kind=int64), size(y, kind=int64), 1_int64, 1_int64, st, msg, &
                           x32=x2, y32=y2)
    call report(st, msg, stat, errmsg)
  end subroutine predict_r32_1d

  subroutine predict_r64_1d(self, x, y, stat, errmsg)
    class(fkb_network), intent(inout) :: self
    real(real64), intent(in), contiguous, target :: x(:)
    real(real64), intent(inout), contiguous, target :: y(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    real(real64), pointer, contiguous :: x2(:, :), y2(:, :)
    character(len=:), allocatable :: msg
    integer :: st
    x2(1:size(x), 1:1) => x
    y2(1:size(y), 1:1) => y
    call self%predict_core(size(x, kind=int64), size(y, kind=int64), 1_int64, 1_int64, st, msg, &
                           x64=x2, y64=y2)
    call report(st, msg, stat, errmsg)
  end subroutine predict_r64_1d

  subroutine net_predict_core(self, rows_x, rows_y, n, cols_y, st, msg, x32, y32, x64, y64, key)
    !! Checks the shapes, claims a workspace and runs the layers. Exactly one of x32/x64 and
    !! one of y32/y64 is present. Host arrays of the model's precision are used in place: the
    !! first layer reads x directly and the last one writes y directly.
    class(fkb_network), intent(inout), target :: self
    integer(int64), intent(in) :: rows_x, rows_y, n, cols_y
    integer, intent(out) :: st
    character(len=:), allocatable, intent(inout) :: msg
    real(real32), intent(in), contiguous, target, optional :: x32(:, :)
    real(real32), intent(inout), contiguous, target, optional :: y32(:, :)
    real(real64), intent(in), contiguous, target, optional :: x64(:, :)
    real(real64), intent(inout), contiguous, target, optional :: y64(:, :)
    integer(int64), intent(in), optional :: key   !! Monte-Carlo dropout stream
    type(ws_slot), target :: spare
    type(ws_slot), pointer :: slot
    real(real32), pointer, contiguous :: xs32(:, :), ys32(:, :)
    real(real64), pointer, contiguous :: xs64(:, :), ys64(:, :)
    integer :: islot
    logical :: ok, f64
    st = FKB_OK
    if (.not. allocated(self%desc)) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'the network is not loaded')
      return
    end if
    if (n < 1) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'batch size must be at least 1, got ' // &
                     int_text(n))
      return
    end if
    if (rows_x /= self%model%n_in) then
      call set_error(st, msg, FKB_ERR_SHAPE, 'input has ' // int_text(rows_x) // &
                     ' features per sample, the network takes ' // int_text(self%model%n_in))
      return
    end if
    if (rows_y /= self%model%n_out() .or. cols_y /= n) then
      call set_error(st, msg, FKB_ERR_SHAPE, 'output array is ' // int_text(rows_y) // ' x ' &
                     // int_text(cols_y) // ', the network gives ' // &
                     int_text(self%model%n_out()) // ' x ' // int_text(n))
      return
    end if
    f64 = self%model%dtype == FKB_FLOAT64
    islot = claim_slot(self%pool)
    if (islot > 0) then
      slot => self%pool(islot)
    else
      slot => spare
    end if
    call reserve(slot, self%model%dtype, self%max_width * n, self%model%n_in * n, &
                 self%model%n_out() * n, present(x64) .neqv. f64, present(y64) .neqv. f64, ok)
    if (.not. ok) then
      if (islot > 0) call release_slot(slot)
      call set_error(st, msg, FKB_ERR_MEMORY, 'cannot allocate the workspace for a batch of ' &
                     // int_text(n))
      return
    end if
    if (f64) then
      if (present(x64)) then
        xs64 => x64
      else
        xs64(1:rows_x, 1:n) => slot%in64(1:rows_x * n)
        xs64 = real(x32, real64)
      end if
      if (present(y64)) then
        ys64 => y64
      else
        ys64(1:rows_y, 1:n) => slot%out64(1:rows_y * n)
      end if
      call run_r64(self, slot%a64, slot%b64, xs64, ys64, key)
      if (present(y32)) y32 = real(ys64, real32)
    else
      if (present(x32)) then
        xs32 => x32
      else
        xs32(1:rows_x, 1:n) => slot%in32(1:rows_x * n)
        xs32 = real(x64, real32)
      end if
      if (present(y32)) then
        ys32 => y32
      else
        ys32(1:rows_y, 1:n) => slot%out32(1:rows_y * n)
      end if
      call run_r32(self, slot%a32, slot%b32, xs32, ys32, key)
      if (present(y64)) y64 = real(ys32, real64)
    end if
    if (islot > 0) call release_slot(slot)
  end subroutine net_predict_core

  subroutine run_r32(self, bufa, bufb, x, y, key)
    integer, parameter :: wp = real32
    type(fkb_network), intent(in) :: self
    integer(int64), intent(in), optional :: key
    real(wp), intent(inout), contiguous, target :: bufa(:), bufb(:)
    real(wp), intent(in), contiguous, target :: x(:, :)
    real(wp), intent(inout), contiguous, target :: y(:, :)
    include 'kernels/run_chain.inc'
  end subroutine run_r32

  subroutine run_r64(self, bufa, bufb, x, y, key)
    integer, parameter :: wp = real64
    type(fkb_network), intent(in) :: self
    integer(int64), intent(in), optional :: key
    real(wp), intent(inout), contiguous, target :: bufa(:), bufb(:)
    real(wp), intent(in), contiguous, target :: x(:, :)
    real(wp), intent(inout), contiguous, target :: y(:, :)
    include 'kernels/run_chain.inc'
  end subroutine run_r64

end module fkb_network_m
