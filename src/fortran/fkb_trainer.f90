!! Training a loaded model in place: the loss, the optimizer and its state, and one step of
!! forward (training mode) -> loss -> backward -> update, batch-major with GEMM.
!!
!! Layers compute in the network's precision; the loss and the optimizer in double precision
!! (float32 weights are rounded back after each step). Dropout is active while training, with
!! masks from a counter-based stream keyed by the step number.
module fkb_trainer
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_ARGUMENT, FKB_ERR_SHAPE, FKB_ERR_UNSUPPORTED, &
                        FKB_ERR_MEMORY, FKB_ERR_LAYER, set_error, clear_layer_error, &
                        take_layer_error
  use fkb_config, only: int_text
  use fkb_tensor, only: fkb_tensor_t, FKB_FLOAT64
  use fkb_model, only: fkb_model_t, train_record_t
  use fkb_text, only: string_t, split_fields
  use fkb_config, only: fkb_config_t, real_text
  use fkb_loss, only: fkb_loss_t, parse_loss, loss_and_gradient, LOSS_BCE, LOSS_CCE, &
                      LOSS_SPARSE_CCE
  use fkb_optimizer, only: fkb_optimizer_t, slot_t, parse_optimizer, optimizer_step
  use fkb_activation, only: ACT_SOFTMAX
  use fkb_layer_dense, only: fkb_dense_t
  use fkb_layer_activation, only: fkb_activation_layer_t
  use fkb_random, only: mix64
  use fkb_custom_loss_m, only: fkb_custom_loss
  implicit none
  private
  public :: fkb_trainer_t, trainer_compile, trainer_step, trainer_record, trainer_restore

  integer, parameter :: ACT_SIGMOID_ID = 14   !! fkb_activation's id of sigmoid

  type :: grad_set
    type(fkb_tensor_t), allocatable :: g(:)
  end type grad_set

  type :: fkb_trainer_t
    type(fkb_loss_t) :: loss
    type(fkb_optimizer_t) :: opt
    character(len=:), allocatable :: opt_spec   !! as compiled, for the file
    logical :: shortcut = .false.   !! crossentropy from the last activation's input
    integer(int64) :: seed = 0
    type(fkb_tensor_t), allocatable :: acts(:), caches(:)
    type(fkb_tensor_t) :: d(2)      !! dL/dy of the current layer and of its input
    type(grad_set), allocatable :: grads(:)
    class(fkb_custom_loss), allocatable :: custom   !! replaces the built-in loss if set
    type(slot_t), allocatable :: vars(:), gs(:)     !! double copies for the optimizer, kept
  end type fkb_trainer_t

contains

  subroutine trainer_compile(tr, model, optimizer, loss, stat, msg, custom)
    !! Sets the optimizer and loss (specs as text); refuses models with a layer that cannot be
    !! trained yet, naming it.
    type(fkb_trainer_t), intent(out) :: tr
    type(fkb_model_t), intent(in) :: model
    character(len=*), intent(in) :: optimizer, loss
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    class(fkb_custom_loss), intent(in), optional :: custom
    integer :: i, act
    call parse_optimizer(optimizer, tr%opt, stat, msg)
    if (stat /= FKB_OK) return
    tr%opt_spec = optimizer
    if (present(custom)) then
      ! The built-in spec is kept for the file only ("custom"), the loss is the user's.
      allocate(tr%custom, source=custom)
      tr%loss%spec = 'custom'
      tr%loss%id = 0
    else
      call parse_loss(loss, tr%loss, stat, msg)
      if (stat /= FKB_OK) return
    end if
    if (.not. model%is_chain()) then
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, 'training is implemented for chains of &
                     &layers (Sequential models) only; this model is a graph')
      return
    end if
    do i = 1, model%n_layers
      if (model%layers(i)%l%reps > 1) then
        call set_error(stat, msg, FKB_ERR_UNSUPPORTED, "layer '" // model%layers(i)%l%name // &
                       "': training on data of rank > 1 (steps, channels) is not implemented")
        return
      end if
      if (.not. model%layers(i)%l%supports_training()) then
        call set_error(stat, msg, FKB_ERR_UNSUPPORTED, "layer '" // model%layers(i)%l%name // &
                       "' (" // model%layers(i)%l%type_name // ') has no backward pass yet: &
                       &this model cannot be trained in FKB')
        return
      end if
    end do
    if (model%n_layers == 0) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, 'the model has no layers to train')
      return
    end if
    ! Keras computes any crossentropy from the pre-activation values when the output comes
    ! straight from a sigmoid or softmax activation, whatever from_logits says (the
    ! activation attaches `_keras_logits`, which keras/src/backend/tensorflow/nn.py
    ! _get_logits prefers); so do we, for the same losses and gradients.
    act = 0
    select type (l => model%layers(model%n_layers)%l)
    type is (fkb_dense_t)
      act = l%act%id
    type is (fkb_activation_layer_t)
      act = l%act%id
    end select
    tr%shortcut = (tr%loss%id == LOSS_BCE .or. tr%loss%id == LOSS_CCE .or. &
                   tr%loss%id == LOSS_SPARSE_CCE) .and. (act == ACT_SIGMOID_ID .or. &
                                                         act == ACT_SOFTMAX)
  end subroutine trainer_compile

  subroutine trainer_step(tr, model, x, t, w, value, apply, stat, msg, gradients, inference)
    !! One training step on x(n_in, batch) with targets t(n_out or 1, batch) and sample
    !! weights w (size batch or 0): value = the loss before the update. With apply false the
    !! weights stay as they are and `gradients` (if present) receives dL/dparams, one flat
    !! array per tensor in file order. A NaN or infinite loss is reported and nothing changes.
    type(fkb_trainer_t), intent(inout) :: tr
    type(fkb_model_t), intent(inout) :: model
    real(real64), intent(in) :: x(:, :), t(:, :), w(:)
    real(real64), intent(out) :: value
    logical, intent(in) :: apply
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(slot_t), intent(inout), optional, allocatable :: gradients(:)
    logical, intent(in), optional :: inference   !! loss only, layers in inference mode
    integer(int64) :: n, n_t
    logical :: infer
    stat = FKB_OK
    value = 0
    n = size(x, 2, int64)
    n_t = model%n_out()
    if (tr%loss%id == LOSS_SPARSE_CCE) n_t = 1
    if (n < 1) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, 'batch size must be at least 1')
    else if (size(x, 1, int64) /= model%n_in) then
      call set_error(stat, msg, FKB_ERR_SHAPE, 'x has ' // int_text(size(x, 1, int64)) // &
                     ' features per sample, the network takes ' // int_text(model%n_in))
    else if (size(t, 1, int64) /= n_t .or. size(t, 2, int64) /= n) then
      call set_error(stat, msg, FKB_ERR_SHAPE, 'y must be ' // int_text(n_t) // ' x ' // &
                     int_text(n) // ' (targets per sample x batch), got ' // &
                     int_text(size(t, 1, int64)) // ' x ' // int_text(size(t, 2, int64)))
    end if
    if (stat == FKB_OK .and. tr%loss%id == 0 .and. .not. allocated(tr%custom)) &
      call set_error(stat, msg, FKB_ERR_ARGUMENT, 'this network was trained with a custom loss: &
                     &call set_custom_loss first')
    if (stat /= FKB_OK) return
    infer = .false.
    if (present(inference)) infer = inference
    if (model%dtype == FKB_FLOAT64) then
      call step_r64(tr, model, x, t, w, value, apply .and. .not. infer, stat, msg, gradients, &
                    infer)
    else
      call step_r32(tr, model, x, t, w, value, apply .and. .not. infer, stat, msg, gradients, &
                    infer)
    end if
  end subroutine trainer_step

  function trainer_record(tr) result(rec)
    !! The training state as a `.fkb` file stores it (format 1.1).
    type(fkb_trainer_t), intent(in) :: tr
    type(train_record_t) :: rec
    character(len=*), parameter :: KIND(3) = ['m   ', 'v   ', 'vhat']
    integer :: k, j
    rec%optimizer = tr%opt_spec
    rec%loss = tr%loss%spec
    rec%state = 'iterations=' // int_text(tr%opt%iterations) // ' u_product=' // &
                real_text(tr%opt%u_product) // ' seed=' // int_text(tr%seed)
    allocate(rec%slot_names(0), rec%slots(0))
    if (.not. allocated(tr%opt%slots)) return
    do k = 1, size(tr%opt%slots)
      do j = 1, 3
        rec%slot_names = [rec%slot_names, string_t(trim(KIND(j)) // '.' // &
                          int_text(int(k, int64)))]
      end do
      rec%slots = [rec%slots, slot_t(tr%opt%slots(k)%m), slot_t(tr%opt%slots(k)%v), &
                   slot_t(tr%opt%slots(k)%vhat)]
    end do
  end function trainer_record

  subroutine trainer_restore(tr, model, rec, stat, msg)
    !! Compiles from a file's training records and restores the optimizer state exactly.
    type(fkb_trainer_t), intent(out) :: tr
    type(fkb_model_t), intent(in) :: model
    type(train_record_t), intent(in) :: rec
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(string_t), allocatable :: f(:)
    type(fkb_config_t) :: cfg
    integer :: k, eq, n_tensors
    if (rec%loss == 'custom') then
      ! Trained with a user's loss: restore everything else; set_custom_loss comes next.
      call trainer_compile(tr, model, rec%optimizer, 'mse', stat, msg)
      tr%loss%spec = 'custom'
      tr%loss%id = 0
    else
      call trainer_compile(tr, model, rec%optimizer, rec%loss, stat, msg)
    end if
    if (stat /= FKB_OK) then
      msg = 'training state: ' // msg
      return
    end if
    f = split_fields(rec%state, ' ')
    cfg%where = 'training state'
    do k = 1, size(f)
      eq = index(f(k)%s, '=')
      if (eq > 1) call cfg%set(f(k)%s(1:eq - 1), f(k)%s(eq + 1:))
    end do
    call cfg%get_int('iterations', tr%opt%iterations, stat, msg)
    if (stat == FKB_OK) call cfg%get_real('u_product', tr%opt%u_product, stat, msg)
    if (stat == FKB_OK) call cfg%get_int('seed', tr%seed, stat, msg)
    if (stat /= FKB_OK) return
    if (size(rec%slots) == 0) return
    n_tensors = 0   ! the trainable ones: those the optimizer keeps slots for
    do k = 1, model%n_layers
      if (allocated(model%layers(k)%l%params)) n_tensors = n_tensors + &
        count([(model%layers(k)%l%tensor_trainable(eq), eq=1, size(model%layers(k)%l%params))])
    end do
    if (size(rec%slots) /= 3 * n_tensors) then
      call set_error(stat, msg, FKB_ERR_SHAPE, 'training state: ' // &
                     int_text(size(rec%slots, kind=int64)) // ' slot arrays for ' // &
                     int_text(int(n_tensors, int64)) // ' tensors')
      return
    end if
    allocate(tr%opt%slots(n_tensors))
    do k = 1, n_tensors
      tr%opt%slots(k)%m = rec%slots(3 * k - 2)%m
      tr%opt%slots(k)%v = rec%slots(3 * k - 1)%m
      tr%opt%slots(k)%vhat = rec%slots(3 * k)%m
    end do
  end subroutine trainer_restore

  elemental real(real64) function sign_or_zero(x)
    real(real64), intent(in) :: x
    sign_or_zero = merge(1.0_real64, merge(-1.0_real64, 0.0_real64, x < 0), x > 0)
  end function sign_or_zero

  logical function all_finite(values)
    type(slot_t), intent(in) :: values(:)
    integer :: k
    all_finite = .true.
    do k = 1, size(values)
      all_finite = all_finite .and. all(abs(values(k)%m) <= huge(1.0_real64))
    end do
  end function all_finite

  subroutine step_r32(tr, model, x, t, w, value, apply, stat, msg, gradients, infer)
    integer, parameter :: wp = real32
    type(fkb_trainer_t), intent(inout), target :: tr
    type(fkb_model_t), intent(inout), target :: model
    real(real64), intent(in) :: x(:, :), t(:, :), w(:)
    real(real64), intent(out) :: value
    logical, intent(in) :: apply
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(slot_t), intent(inout), optional, allocatable :: gradients(:)
    logical, intent(in) :: infer
    integer(int64) :: n
    include 'kernels/train_step.inc'
  contains
    function buf(tensor, rows) result(p)
      ! A rows x n view of a grow-only buffer (contents kept unless it has to grow).
      type(fkb_tensor_t), intent(inout), target :: tensor
      integer(int64), intent(in) :: rows
      real(wp), pointer, contiguous :: p(:, :)
      if (allocated(tensor%r32)) then
        if (size(tensor%r32, kind=int64) < rows * n) deallocate(tensor%r32)
      end if
      if (.not. allocated(tensor%r32)) allocate(tensor%r32(max(1_int64, rows * n)))
      p(1:rows, 1:n) => tensor%r32(1:rows * n)
    end function buf
    function flat(tensor, size_) result(p)
      type(fkb_tensor_t), intent(inout), target :: tensor
      integer(int64), intent(in) :: size_
      real(wp), pointer, contiguous :: p(:)
      if (.not. allocated(tensor%r32)) allocate(tensor%r32(size_))
      p => tensor%r32
    end function flat
    function param(tensor) result(p)
      ! The weights of a tensor, in this precision.
      type(fkb_tensor_t), intent(inout), target :: tensor
      real(wp), pointer, contiguous :: p(:)
      p => tensor%r32
    end function param
  end subroutine step_r32

  subroutine step_r64(tr, model, x, t, w, value, apply, stat, msg, gradients, infer)
    integer, parameter :: wp = real64
    type(fkb_trainer_t), intent(inout), target :: tr
    type(fkb_model_t), intent(inout), target :: model
    real(real64), intent(in) :: x(:, :), t(:, :), w(:)
    real(real64), intent(out) :: value
    logical, intent(in) :: apply
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(slot_t), intent(inout), optional, allocatable :: gradients(:)
    logical, intent(in) :: infer
    integer(int64) :: n
    include 'kernels/train_step.inc'
  contains
    function buf(tensor, rows) result(p)
      ! A rows x n view of a grow-only buffer (contents kept unless it has to grow).
      type(fkb_tensor_t), intent(inout), target :: tensor
      integer(int64), intent(in) :: rows
      real(wp), pointer, contiguous :: p(:, :)
      if (allocated(tensor%r64)) then
        if (size(tensor%r64, kind=int64) < rows * n) deallocate(tensor%r64)
      end if
      if (.not. allocated(tensor%r64)) allocate(tensor%r64(max(1_int64, rows * n)))
      p(1:rows, 1:n) => tensor%r64(1:rows * n)
    end function buf
    function flat(tensor, size_) result(p)
      type(fkb_tensor_t), intent(inout), target :: tensor
      integer(int64), intent(in) :: size_
      real(wp), pointer, contiguous :: p(:)
      if (.not. allocated(tensor%r64)) allocate(tensor%r64(size_))
      p => tensor%r64
    end function flat
    function param(tensor) result(p)
      ! The weights of a tensor, in this precision.
      type(fkb_tensor_t), intent(inout), target :: tensor
      real(wp), pointer, contiguous :: p(:)
      p => tensor%r64
    end function param
  end subroutine step_r64

end module fkb_trainer
