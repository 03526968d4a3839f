!! Training in Fortran: analytic gradients of every activation and loss against central
!! finite differences (float64 models; |fd - g| <= 1e-6 max(1, |g|) since the difference
!! quotient itself is accurate to ~1e-8), optimizers reduce the loss, and the bad cases:
!! unknown names, bad learning rates, untrainable layers, shapes, NaN loss (weights kept).
module my_losses
  ! A user's loss: half the sum of squares per sample, averaged over the batch; or one that
  ! fails on purpose.
  use iso_fortran_env, only: real64
  use fkb, only: fkb_custom_loss
  implicit none
  type, extends(fkb_custom_loss) :: half_sse
    logical :: fail = .false.
  contains
    procedure :: evaluate => half_sse_evaluate
  end type half_sse
contains
  subroutine half_sse_evaluate(self, y, t, w, value, grad, stat, msg)
    class(half_sse), intent(inout) :: self
    real(real64), intent(in) :: y(:, :), t(:, :), w(:)
    real(real64), intent(out) :: value
    real(real64), intent(out) :: grad(:, :)
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    value = 0.5_real64 * sum((y - t)**2) / size(y, 2)
    grad = (y - t) / size(y, 2)
    stat = 0
    if (self%fail) then
      stat = 3
      msg = 'deliberate failure'
    end if
  end subroutine half_sse_evaluate
end module my_losses

program test_training
  use iso_fortran_env, only: real64, int64
  use fkb
  use my_losses, only: half_sse
  use fkb_testing, only: check, finish, read_f64, case_t, read_cases, write_fkb
  implicit none
  character(len=1024) :: dir
  type(case_t), allocatable :: cases(:)
  character(len=*), parameter :: LOSSES(9) = [character(len=60) :: 'mean_squared_error', &
    'mean_absolute_error', 'huber delta=0.5', 'log_cosh', 'mean_absolute_percentage_error', &
    'categorical_crossentropy', 'categorical_crossentropy from_logits=1 label_smoothing=0.1', &
    'binary_crossentropy from_logits=1', 'sparse_categorical_crossentropy from_logits=1']
  integer :: c, k

  call get_command_argument(1, dir)
  call read_cases(trim(dir), cases)
  ! Every activation (the dense_* cases) with MSE.
  do c = 1, size(cases)
    if (cases(c)%dtype /= 'float64') cycle
    ! Every float64 case: all activations, and every layer type (training-mode
    ! BatchNormalization, LayerNormalization, Normalization, PReLU, Dropout with its mask).
    if (cases(c)%name == 'dense_exponential_float64') cycle   ! outputs too large for FD here
    call fd_check(cases(c), 'mean_squared_error')
  end do
  ! Every loss on one model with a softmax output (probabilities, positive).
  do k = 1, size(LOSSES)
    do c = 1, size(cases)
      if (cases(c)%name == 'dense_softmax_float64') call fd_check(cases(c), trim(LOSSES(k)))
    end do
  end do
  call descent_and_errors()
  call schedule_check('exponential_decay initial_learning_rate=0.1 decay_steps=3 decay_rate=0.5', &
                      'exp')
  call schedule_check('exponential_decay initial_learning_rate=0.1 decay_steps=3 &
                      &decay_rate=0.5 staircase=1', 'exp_stair')
  call schedule_check('piecewise_constant_decay boundaries=2,5 values=0.1,0.05,0.01', 'piece')
  call schedule_check('cosine_decay initial_learning_rate=0.1 decay_steps=6 alpha=0.1', 'cos')
  call schedule_check('cosine_decay initial_learning_rate=0.01 decay_steps=4 warmup_target=0.1 &
                      &warmup_steps=3', 'cos_warm')
  call custom_loss()
  call frozen_layer()
  call resume_is_bit_identical('adam amsgrad=1', 'spcam_like_float32')
  call resume_is_bit_identical('nadam', 'spcam_like_float64')
  call resume_is_bit_identical('rmsprop centered=1 momentum=0.5', 'spcam_like_float32')
  call resume_is_bit_identical('sgd momentum=0.9 nesterov=1', 'dropout_flatten_float32')
  call finish()

contains

  subroutine fd_check(cs, loss)
    type(case_t), intent(in) :: cs
    character(len=*), intent(in) :: loss
    type(fkb_network) :: net
    integer, parameter :: B = 5
    real(real64), allocatable :: x(:, :), y(:, :), g(:), v(:), vp(:)
    real(real64) :: l0, lp, lm, h, fd, worst
    integer(int64) :: i, j, total, offset
    integer :: stat
    character(len=512) :: msg
    allocate(x(cs%n_in, cs%n))
    call read_f64(trim(dir) // '/' // cs%name // '.x.bin', x)
    call net%load(trim(dir) // '/' // cs%name // '.fkb')
    msg = ''
    call net%compile('sgd', loss, stat=stat, errmsg=msg)
    call check(stat == FKB_OK, cs%name // ': compile ' // loss // ': ' // trim(msg))
    if (stat /= FKB_OK) return
    allocate(y(cs%n_out, B))
    y = targets(loss, cs%n_out, B)
    if (index(loss, 'sparse') > 0) y = reshape([(real(mod(j, cs%n_out), real64), j=1, B)], &
                                               [1_int64, int(B, int64)])
    total = 0
    do i = 1, net%n_tensors()
      total = total + net%tensor_size(i)
    end do
    allocate(g(total))
    call net%gradients(x(:, 1:B), y, l0, g, stat=stat, errmsg=msg)
    call check(stat == FKB_OK, cs%name // ': gradients: ' // trim(msg))
    if (stat /= FKB_OK) return
    ! Central differences on a few entries of every tensor.
    worst = 0
    offset = 0
    do i = 1, net%n_tensors()
      allocate(v(net%tensor_size(i)))
      call net%get_tensor(i, v)
      ! Normalization's adapted mean and variance are state, not weights (zero gradient).
      if (is_state(net%description(), i)) then
        offset = offset + size(v)
        deallocate(v)
        cycle
      end if
      do j = 1, size(v, kind=int64), max(1_int64, size(v, kind=int64) / 4)
        h = 1e-6_real64 * max(1.0_real64, abs(v(j)))
        vp = v
        vp(j) = v(j) + h
        call net%set_tensor(i, vp)
        call loss_only(net, x(:, 1:B), y, lp)
        vp(j) = v(j) - h
        call net%set_tensor(i, vp)
        call loss_only(net, x(:, 1:B), y, lm)
        fd = (lp - lm) / (2 * h)
        worst = max(worst, abs(fd - g(offset + j)) / max(1.0_real64, abs(g(offset + j))))
      end do
      call net%set_tensor(i, v)
      offset = offset + size(v)
      deallocate(v)
    end do
    call check(worst <= 1e-6_real64 .and. l0 == l0, cs%name // ' / ' // loss // &
               ': gradients = finite differences (worst ' // rtoa(worst) // ')')
  end subroutine fd_check

  subroutine custom_loss()
    ! half_sse = MSE * n_out / 2, so SGD with lr * 2 / n_out on half_sse takes the same steps
    ! as SGD with lr on the built-in MSE; a failing loss changes nothing; the state survives a
    ! save/load once the loss is set again.
    type(fkb_network) :: a, b
    type(half_sse) :: mine
    real(real64), allocatable :: x(:, :), y(:, :), wa(:), wb(:)
    real(real64) :: la, lb
    integer :: step, stat
    character(len=512) :: msg
    character(len=:), allocatable :: path
    path = trim(dir) // '/dense_tanh_float64.fkb'
    call a%load(path)
    call b%load(path)
    allocate(x(7, 1024), y(5, 16))
    call read_f64(trim(dir) // '/dense_tanh_float64.x.bin', x)
    y = 0.2_real64
    call a%compile('sgd learning_rate=0.05', 'mse')
    call b%compile('sgd learning_rate=0.02', 'custom', stat=stat, errmsg=msg, custom_loss=mine)
    call check(stat == FKB_OK, 'compile with a custom loss: ' // trim(msg))
    do step = 1, 5
      call a%train_on_batch(x(:, 1:16), y, la)
      call b%train_on_batch(x(:, 1:16), y, lb)
    end do
    allocate(wa(a%tensor_size(1_int64)), wb(b%tensor_size(1_int64)))
    call a%get_tensor(1_int64, wa)
    call b%get_tensor(1_int64, wb)
    call check(maxval(abs(wa - wb)) <= 1e-14_real64 * maxval(abs(wa)) .and. &
               abs(lb - la * 5 / 2) <= 1e-14_real64 * la, 'custom loss trains like its built-in twin')
    mine%fail = .true.
    call b%set_custom_loss(mine)
    call b%train_on_batch(x(:, 1:16), y, lb, stat=stat, errmsg=msg)
    call b%get_tensor(1_int64, wa)
    call check(stat == FKB_ERR_ARGUMENT .and. index(msg, 'deliberate failure') > 0 .and. &
               all(wa == wb) .and. b%iterations() == 5, 'a failing custom loss changes nothing')
    call b%save(trim(dir) // '/../scratch/custom.fkb')
    call a%load(trim(dir) // '/../scratch/custom.fkb')
    call a%train_on_batch(x(:, 1:16), y, la, stat=stat, errmsg=msg)
    call check(stat == FKB_ERR_ARGUMENT .and. index(msg, 'set_custom_loss') > 0, &
               'reloaded: asks for the custom loss')
    mine%fail = .false.
    call a%set_custom_loss(mine)
    call a%train_on_batch(x(:, 1:16), y, la, stat=stat)
    call check(stat == FKB_OK .and. a%iterations() == 6, 'then trains on from step 5')
  end subroutine custom_loss

  subroutine frozen_layer()
    ! trainable=0: AdamW (which also decays weights) leaves that layer alone, trains the other.
    character, parameter :: nl = new_line('a')
    type(fkb_network) :: net
    real(real64) :: x(2, 8), y(3, 8), l, k1(6), k1b(6), k2(9), k2b(9), g(6 + 3 + 9 + 3)
    integer :: step
    call write_fkb(trim(dir) // '/../scratch/frozen.fkb', 'fkb-model' // nl // &
      'dtype float64' // nl // 'input 2' // nl // &
      'layer dense name=frozen units=3 activation=tanh use_bias=1 trainable=0' // nl // &
      'tensor kernel float64 2,3' // nl // 'tensor bias float64 3' // nl // &
      'layer dense name=free units=3 activation=linear use_bias=1' // nl // &
      'tensor kernel float64 3,3' // nl // 'tensor bias float64 3' // nl // 'end' // nl, 21 * 8)
    call net%load(trim(dir) // '/../scratch/frozen.fkb')
    call check(index(net%description(), 'trainable=0') > 0, 'trainable=0 kept in the description')
    call net%compile('adamw learning_rate=0.1', 'mse')
    x = 0.5_real64
    y = 0.1_real64
    call net%get_tensor(1_int64, k1)
    call net%get_tensor(3_int64, k2)
    call net%gradients(x, y, l, g)
    call check(all(g(1:9) == 0) .and. any(g(10:) /= 0), 'frozen tensors report zero gradients')
    do step = 1, 5
      call net%train_on_batch(x, y, l)
    end do
    call net%get_tensor(1_int64, k1b)
    call net%get_tensor(3_int64, k2b)
    call check(all(k1b == k1) .and. any(k2b /= k2), 'frozen layer untouched, the other trained')
  end subroutine frozen_layer

  subroutine schedule_check(spec, kind)
    ! Plain SGD moves w by -lr*g: the learning rate of each step is read back from the
    ! update of the weight with the largest gradient and compared with Keras' formula.
    character(len=*), intent(in) :: spec, kind
    type(fkb_network) :: net
    real(real64), allocatable :: x(:, :), y(:, :), g(:), w0(:), w1(:)
    real(real64) :: l, lr, expect, worst, pi
    integer(int64) :: i, j, step, total
    pi = 4 * atan(1.0_real64)
    call net%load(trim(dir) // '/dense_linear_float64.fkb')
    call net%compile('sgd learning_rate=' // spec, 'mse')
    allocate(x(7, 1024), y(5, 8))
    call read_f64(trim(dir) // '/dense_linear_float64.x.bin', x)
    y = 1
    total = net%tensor_size(1_int64)
    allocate(g(sum([(net%tensor_size(i), i=1, net%n_tensors())])), w0(total), w1(total))
    worst = 0
    do step = 0, 9
      call net%gradients(x(:, 1:8), y, l, g)
      call net%get_tensor(1_int64, w0)
      call net%train_on_batch(x(:, 1:8), y, l)
      call net%get_tensor(1_int64, w1)
      j = maxloc(abs(g(1:total)), 1)
      lr = (w0(j) - w1(j)) / g(j)
      select case (kind)
      case ('exp'); expect = 0.1_real64 * 0.5_real64**(step / 3.0_real64)
      case ('exp_stair'); expect = 0.1_real64 * 0.5_real64**(step / 3)
      case ('piece')
        expect = merge(0.1_real64, merge(0.05_real64, 0.01_real64, step <= 5), step <= 2)
      case ('cos')
        expect = 0.1_real64 * (0.9_real64 * 0.5_real64 * (1 + cos(pi * min(step, 6_int64) &
                 / 6.0_real64)) + 0.1_real64)
      case ('cos_warm')
        if (step < 3) then
          expect = 0.01_real64 + (0.1_real64 - 0.01_real64) * step / 3.0_real64
        else
          expect = 0.1_real64 * 0.5_real64 * (1 + cos(pi * min(step - 3, 4_int64) / 4.0_real64))
        end if
      end select
      worst = max(worst, abs(lr - expect) / expect)
    end do
    ! Keras evaluates schedules in float32 (so does FKB): agreement to float32 precision.
    call check(worst < 1e-6_real64, 'schedule ' // kind // ': learning rate per step')
  end subroutine schedule_check

  subroutine resume_is_bit_identical(opt, name)
    ! 10 steps, save, load, 10 more == 20 steps without stopping, bit for bit (also with
    ! Dropout active during training: its masks follow the saved step count and seed).
    character(len=*), intent(in) :: opt, name
    type(fkb_network) :: a, b
    real(real64), allocatable :: x(:, :), y(:, :), wa(:), wb(:)
    real(real64) :: la, lb
    integer :: step, stat
    integer(int64) :: i
    logical :: same
    character(len=512) :: msg
    character(len=:), allocatable :: path
    path = trim(dir) // '/' // name // '.fkb'
    call a%load(path)
    allocate(x(a%n_inputs(), 1024), y(a%n_outputs(), 32))
    call read_f64(trim(dir) // '/' // name // '.x.bin', x)
    y = 0.3_real64
    call a%compile(opt, 'mse')
    do step = 1, 10
      call a%train_on_batch(x(:, 1:32), y, la)
    end do
    call a%save(trim(dir) // '/../scratch/resume_' // name // '.fkb', stat=stat, errmsg=msg)
    call check(stat == FKB_OK, opt // ': save mid-training: ' // trim(msg))
    call b%load(trim(dir) // '/../scratch/resume_' // name // '.fkb', stat=stat, errmsg=msg)
    call check(stat == FKB_OK .and. b%is_compiled() .and. b%iterations() == 10, &
               opt // ': load restores the training state: ' // trim(msg))
    if (stat /= FKB_OK) return
    do step = 1, 10
      call a%train_on_batch(x(:, 1 + step:32 + step), y, la)
      call b%train_on_batch(x(:, 1 + step:32 + step), y, lb)
    end do
    same = la == lb
    do i = 1, a%n_tensors()
      allocate(wa(a%tensor_size(i)), wb(b%tensor_size(i)))
      call a%get_tensor(i, wa)
      call b%get_tensor(i, wb)
      same = same .and. all(wa == wb)
      deallocate(wa, wb)
    end do
    call check(same, opt // ' / ' // name // ': save -> load -> train = never stopping, bit for bit')
  end subroutine resume_is_bit_identical

  logical function is_state(desc, index)
    ! Whether tensor `index` is named mean or variance in the description.
    character(len=*), intent(in) :: desc
    integer(int64), intent(in) :: index
    integer :: at, k, next
    at = 1
    k = 0
    is_state = .false.
    do
      next = index_of(desc(at:), 'tensor ')
      if (next == 0) return
      at = at + next - 1 + 7
      k = k + 1
      if (k == index) then
        is_state = desc(at:at + 4) == 'mean ' .or. desc(at:at + 8) == 'variance '
        return
      end if
    end do
  end function is_state

  integer function index_of(s, sub)
    character(len=*), intent(in) :: s, sub
    index_of = index(s, sub)
  end function index_of

  subroutine loss_only(net, x, y, l)
    ! The training-mode loss (batch statistics, the step's Dropout mask), as differentiated.
    type(fkb_network), intent(inout) :: net
    real(real64), intent(in) :: x(:, :), y(:, :)
    real(real64), intent(out) :: l
    real(real64), allocatable :: g(:)
    integer(int64) :: i
    allocate(g(sum([(net%tensor_size(i), i=1, net%n_tensors())])))
    call net%gradients(x, y, l, g)
  end subroutine loss_only

  function targets(loss, m, n) result(t)
    character(len=*), intent(in) :: loss
    integer(int64), intent(in) :: m
    integer, intent(in) :: n
    real(real64) :: t(m, n)
    integer :: i, j
    do j = 1, n
      do i = 1, int(m)
        t(i, j) = 0.1_real64 * mod(7 * i + 3 * j, 10) + 0.05_real64
      end do
      if (index(loss, 'categorical') > 0) t(:, j) = t(:, j) / sum(t(:, j))
    end do
  end function targets

  subroutine descent_and_errors()
    type(fkb_network) :: net
    real(real64), allocatable :: x(:, :), y(:, :), before(:), after(:)
    real(real64) :: l, first, last
    character(len=*), parameter :: OPTS(6) = [character(len=40) :: 'sgd momentum=0.9', &
      'adam', 'adamw', 'rmsprop centered=1', 'adagrad learning_rate=0.05', 'nadam']
    character(len=512) :: msg
    integer :: stat, k, step
    character(len=:), allocatable :: path
    path = trim(dir) // '/spcam_like_float32.fkb'
    allocate(x(94, 64), y(65, 64))
    call read_f64(trim(dir) // '/spcam_like_float32.x.bin', x)
    y = 0.5_real64 * x(1:65, :)
    do k = 1, size(OPTS)
      call net%load(path)
      call net%compile(trim(OPTS(k)), 'mse', stat=stat, errmsg=msg)
      call check(stat == FKB_OK, 'compile ' // trim(OPTS(k)))
      do step = 1, 30
        call net%train_on_batch(x, y, l, stat=stat)
        if (step == 1) first = l
      end do
      last = l
      call check(stat == FKB_OK .and. last < first, trim(OPTS(k)) // ': 30 steps reduce the loss')
      call check(net%iterations() == 30, trim(OPTS(k)) // ': iterations counted')
    end do
    ! Bad input.
    call net%load(path)
    call net%compile('adamax', 'mse', stat=stat, errmsg=msg)
    call check(stat == FKB_ERR_UNSUPPORTED .and. index(msg, 'adamax') > 0, 'unknown optimizer')
    call net%compile('adam', 'kl_divergence', stat=stat, errmsg=msg)
    call check(stat == FKB_ERR_UNSUPPORTED .and. index(msg, 'kl_divergence') > 0, 'unknown loss')
    call net%compile('adam learning_rate=0', 'mse', stat=stat, errmsg=msg)
    call check(stat == FKB_ERR_ARGUMENT .and. index(msg, 'learning_rate') > 0, 'lr <= 0')
    call net%compile('adam learning_rate=nan', 'mse', stat=stat, errmsg=msg)
    call check(stat == FKB_ERR_ARGUMENT, 'lr NaN')
    call net%compile('adam betas=1', 'mse', stat=stat, errmsg=msg)
    call check(stat == FKB_ERR_UNSUPPORTED .and. index(msg, 'betas') > 0, 'unknown option')
    call net%train_on_batch(x, y, l, stat=stat, errmsg=msg)
    call check(stat == FKB_ERR_ARGUMENT .and. index(msg, 'compile') > 0, 'train before compile')
    call net%compile('sgd', 'mse')
    call net%train_on_batch(x, y(1:3, :), l, stat=stat, errmsg=msg)
    call check(stat == FKB_ERR_SHAPE .and. index(msg, 'y must be 65 x 64') > 0, 'y shape')
    allocate(before(net%tensor_size(1_int64)), after(net%tensor_size(1_int64)))
    call net%get_tensor(1_int64, before)
    y(3, 5) = ieee_nan()
    call net%train_on_batch(x, y, l, stat=stat, errmsg=msg)
    call check(stat == FKB_ERR_ARGUMENT .and. index(msg, 'NaN') > 0, 'NaN loss reported')
    call net%get_tensor(1_int64, after)
    call check(all(after == before) .and. net%iterations() == 0, 'NaN loss: weights kept')
  end subroutine descent_and_errors

  real(real64) function ieee_nan()
    use, intrinsic :: ieee_arithmetic, only: ieee_value, ieee_quiet_nan
    ieee_nan = ieee_value(1.0_real64, ieee_quiet_nan)
  end function ieee_nan

  function rtoa(x) result(s)
    real(real64), intent(in) :: x
    character(len=:), allocatable :: s
    character(len=16) :: buf
    write (buf, '(es10.3)') x
    s = trim(adjustl(buf))
  end function rtoa

end program test_training
