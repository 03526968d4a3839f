!! Optimizers with Keras 3's update rules and defaults: SGD (momentum, nesterov), Adam
!! (amsgrad), AdamW, RMSprop (rho, momentum, centered), Adagrad, Nadam; gradient clipping
!! (clipnorm, clipvalue, global_clipnorm) and weight decay, applied in Keras' order:
!! clip -> decay -> update of every variable -> iterations + 1.
!!
!! Specs are text: "adam learning_rate=0.001 beta_1=0.9 amsgrad=1". Arithmetic in double
!! precision; a float32 network rounds its weights back to float32 after each step. Except
!! Adam and AdamW on a float32 network (`single`): their state and every operation are float32
!! in Keras' order, as Keras computes them for float32 variables (bit for bit, given the same
!! gradients; and about 4x cheaper than double's square roots and divisions).
!! Where Keras passes a Python float through a float32 tensor before use (so even a float64
!! model sees it rounded), we round it too, marked "Keras: float32" with the source line:
!! SGD's momentum, Adam's and Nadam's bias-correction powers, Nadam's 0.96, weight decay and
!! Adagrad's initial accumulator.
module fkb_optimizer
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_UNSUPPORTED, FKB_ERR_ARGUMENT, set_error
  use fkb_config, only: fkb_config_t, real_text, int_text
  use fkb_text, only: string_t, split_fields
  use fkb_optimizer_rules, only: sgd_rule, adam_rule, adam_rule_f32, rmsprop_rule, adagrad_rule, &
                                 nadam_rule
  implicit none
  private
  public :: fkb_optimizer_t, slot_t, parse_optimizer, optimizer_step, learning_rate_at
  public :: clips, optimizer_begin, optimizer_update, optimizer_end, updates_r32, &
            optimizer_update_r32, optimizer_state, optimizer_set_state

  enum, bind(c)
    enumerator :: OPT_SGD = 1, OPT_ADAM, OPT_ADAMW, OPT_RMSPROP, OPT_ADAGRAD, OPT_NADAM
  end enum

  type :: slot_t
    !! Optimizer state of one variable (which arrays are used depends on the optimizer).
    real(real64), allocatable :: m(:), v(:), vhat(:)
  end type slot_t

  type :: slot32_t
    !! Adam's state of one variable when the update runs in float32 (fkb_optimizer_t%single).
    real(real32), allocatable :: m(:), v(:), vhat(:)
  end type slot32_t

  type :: fkb_optimizer_t
    integer :: id = OPT_SGD
    character(len=:), allocatable :: name
    real(real64) :: learning_rate = 0.01_real64
    real(real64) :: beta_1 = 0.9_real64, beta_2 = 0.999_real64, epsilon = 1e-7_real64
    real(real64) :: momentum = 0, rho = 0.9_real64, initial_accumulator_value = 0.1_real64
    real(real64) :: weight_decay = 0
    real(real64) :: clipnorm = -1, clipvalue = -1, global_clipnorm = -1   !! < 0: off
    logical :: nesterov = .false., amsgrad = .false., centered = .false.
    integer(int64) :: iterations = 0
    real(real64) :: u_product = 1        !! Nadam's running product of momentum factors
    real(real64) :: step_lr = 0, step_t = 0   !! the step under way (optimizer_begin)
    real(real64) :: step_alpha = 0           !! Adam's step size with bias corrections
    !! Adam/AdamW on float32 variables: state (slots32) and arithmetic in float32, as Keras
    logical :: single = .false.
    real(real32) :: lr32 = 0, alpha32 = 0     !! the step's learning rate and step size then
    ! Learning-rate schedule (Keras' ExponentialDecay, PiecewiseConstantDecay, CosineDecay),
    ! evaluated at the step count before the update, as Keras does.
    character(len=:), allocatable :: schedule
    real(real64) :: decay_steps = 1, decay_rate = 1, alpha = 0, warmup_target = 0
    real(real64) :: warmup_steps = 0
    logical :: staircase = .false., has_warmup = .false.
    real(real64), allocatable :: boundaries(:), values(:)
    type(slot_t), allocatable :: slots(:)
    type(slot32_t), allocatable :: slots32(:)
  end type fkb_optimizer_t

contains

  subroutine parse_optimizer(text, opt, stat, msg)
    !! Parses an optimizer spec; Keras' names (any case) and argument names and defaults.
    character(len=*), intent(in) :: text
    type(fkb_optimizer_t), intent(out) :: opt
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(string_t), allocatable :: f(:)
    type(fkb_config_t) :: cfg
    character(len=:), allocatable :: unused, name
    real(real64) :: d_lr, d_wd
    integer :: k, eq
    stat = FKB_OK
    f = split_fields(text, ' ')
    if (size(f) == 0) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, 'empty optimizer')
      return
    end if
    name = lower(f(1)%s)
    select case (name)
    case ('sgd'); opt%id = OPT_SGD; opt%learning_rate = 0.01_real64
    case ('adam'); opt%id = OPT_ADAM; opt%learning_rate = 0.001_real64
    case ('adamw'); opt%id = OPT_ADAMW; opt%learning_rate = 0.001_real64
      opt%weight_decay = 0.004_real64
    case ('rmsprop'); opt%id = OPT_RMSPROP; opt%learning_rate = 0.001_real64
    case ('adagrad'); opt%id = OPT_ADAGRAD; opt%learning_rate = 0.001_real64
    case ('nadam'); opt%id = OPT_NADAM; opt%learning_rate = 0.001_real64
    case default
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, "unknown optimizer '" // f(1)%s // "'")
      return
    end select
    opt%name = name
    cfg%where = "optimizer '" // f(1)%s // "'"
    do k = 2, size(f)
      eq = index(f(k)%s, '=')
      if (eq < 2) then
        call set_error(stat, msg, FKB_ERR_ARGUMENT, cfg%where // ": malformed option '" // &
                       f(k)%s // "'")
        return
      end if
      call cfg%set(f(k)%s(1:eq - 1), f(k)%s(eq + 1:))
    end do
    ! The defaults set above, copied: an argument must not alias its own default.
    d_lr = opt%learning_rate
    d_wd = opt%weight_decay
    call read_learning_rate(cfg, opt, d_lr, stat, msg)
    if (stat == FKB_OK) call cfg%get_real('weight_decay', opt%weight_decay, stat, msg, &
                                          default=d_wd)
    if (stat == FKB_OK) call cfg%get_real('clipnorm', opt%clipnorm, stat, msg, default=-1.0_real64)
    if (stat == FKB_OK) call cfg%get_real('clipvalue', opt%clipvalue, stat, msg, default=-1.0_real64)
    if (stat == FKB_OK) call cfg%get_real('global_clipnorm', opt%global_clipnorm, stat, msg, &
                                          default=-1.0_real64)
    if (stat == FKB_OK .and. cfg%has('iterations')) &
      call cfg%get_int('iterations', opt%iterations, stat, msg)
    select case (opt%id)
    case (OPT_SGD)
      if (stat == FKB_OK) call cfg%get_real('momentum', opt%momentum, stat, msg, default=0.0_real64)
      if (stat == FKB_OK) call cfg%get_bool('nesterov', opt%nesterov, stat, msg, default=.false.)
    case (OPT_ADAM, OPT_ADAMW, OPT_NADAM)
      if (stat == FKB_OK) call cfg%get_real('beta_1', opt%beta_1, stat, msg, default=0.9_real64)
      if (stat == FKB_OK) call cfg%get_real('beta_2', opt%beta_2, stat, msg, default=0.999_real64)
      if (stat == FKB_OK) call cfg%get_real('epsilon', opt%epsilon, stat, msg, default=1e-7_real64)
      if (stat == FKB_OK .and. opt%id /= OPT_NADAM) &
        call cfg%get_bool('amsgrad', opt%amsgrad, stat, msg, default=.false.)
    case (OPT_RMSPROP)
      if (stat == FKB_OK) call cfg%get_real('rho', opt%rho, stat, msg, default=0.9_real64)
      if (stat == FKB_OK) call cfg%get_real('momentum', opt%momentum, stat, msg, default=0.0_real64)
      if (stat == FKB_OK) call cfg%get_real('epsilon', opt%epsilon, stat, msg, default=1e-7_real64)
      if (stat == FKB_OK) call cfg%get_bool('centered', opt%centered, stat, msg, default=.false.)
    case (OPT_ADAGRAD)
      if (stat == FKB_OK) call cfg%get_real('initial_accumulator_value', &
                                            opt%initial_accumulator_value, stat, msg, &
                                            default=0.1_real64)
      if (stat == FKB_OK) call cfg%get_real('epsilon', opt%epsilon, stat, msg, default=1e-7_real64)
    end select
    if (stat /= FKB_OK) return
    unused = cfg%unused_key()
    if (len(unused) > 0) then
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, cfg%where // ": unknown option '" // &
                     unused // "'")
    else if (.not. (opt%learning_rate > 0 .and. opt%learning_rate <= huge(1.0_real64))) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, cfg%where // ': learning_rate must be a &
                     &positive number, got ' // real_text(opt%learning_rate))
    else if (opt%clipnorm > 0 .and. opt%global_clipnorm > 0) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, cfg%where // ': clipnorm and &
                     &global_clipnorm cannot both be set (as in Keras)')
    else if (.not. (opt%weight_decay >= 0) .or. .not. (opt%momentum >= 0)) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, cfg%where // ': weight_decay and momentum &
                     &must be >= 0')
    end if
  end subroutine parse_optimizer

  subroutine optimizer_step(opt, vars, grads)
    !! One update of every variable vars(k)%m (the weights, as double) from grads(k)%m.
    type(fkb_optimizer_t), intent(inout) :: opt
    type(slot_t), intent(inout) :: vars(:)
    type(slot_t), intent(inout) :: grads(:)
    real(real64) :: norm, scale
    integer :: k
    call optimizer_begin(opt, [(size(vars(k)%m, kind=int64), k = 1, size(vars))])
    ! 1. Clipping.
    if (opt%clipnorm > 0) then
      do k = 1, size(grads)
        norm = sqrt(sum(grads(k)%m**2))
        if (norm > 0) grads(k)%m = grads(k)%m * opt%clipnorm / max(norm, opt%clipnorm)
      end do
    end if
    if (opt%global_clipnorm > 0) then
      norm = 0
      do k = 1, size(grads)
        norm = norm + sum(grads(k)%m**2)
      end do
      norm = sqrt(norm)
      if (norm > 0) then
        scale = opt%global_clipnorm * min(1 / norm, 1 / opt%global_clipnorm)
        do k = 1, size(grads)
          grads(k)%m = grads(k)%m * scale
        end do
      end if
    end if
    if (opt%clipvalue > 0) then
      do k = 1, size(grads)
        grads(k)%m = min(max(grads(k)%m, -opt%clipvalue), opt%clipvalue)
      end do
    end if
    ! 2. and 3. Weight decay and the update rule.
    do k = 1, size(vars)
      call optimizer_update(opt, k, 1_int64, vars(k)%m, grads(k)%m)
    end do
    call optimizer_end(opt)
  end subroutine optimizer_step

  logical function clips(opt)
    !! Whether the step clips gradients (then it needs all of them at once: optimizer_step).
    type(fkb_optimizer_t), intent(in) :: opt
    clips = opt%clipnorm > 0 .or. opt%global_clipnorm > 0 .or. opt%clipvalue > 0
  end function clips

  subroutine optimizer_begin(opt, sizes)
    !! Starts a step over variables of these sizes: slots on the first step, the step's
    !! learning rate and counters. Then optimizer_update over every element of every variable
    !! (in any pieces), then optimizer_end.
    type(fkb_optimizer_t), intent(inout) :: opt
    integer(int64), intent(in) :: sizes(:)
    real(real64) :: u_t, b1p, b2p
    real(real32) :: b1p32, b2p32
    if (.not. (allocated(opt%slots) .or. allocated(opt%slots32))) call init_slots(opt, sizes)
    opt%step_lr = learning_rate_at(opt, opt%iterations)
    opt%step_t = real(opt%iterations + 1, real64)
    if (opt%id == OPT_NADAM) then
      u_t = opt%beta_1 * (1 - 0.5_real64 * 0.96_real64**opt%step_t)
      opt%u_product = opt%u_product * u_t
    end if
    if (opt%id == OPT_ADAM .or. opt%id == OPT_ADAMW) then
      b1p = f32(opt%beta_1)**opt%step_t        ! Keras: float32 (optimizers/adam.py)
      b2p = f32(opt%beta_2)**opt%step_t
      opt%step_alpha = opt%step_lr * sqrt(1 - b2p) / (1 - b1p)
      if (opt%single) then
        ! Keras, float32 variables: alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t), each
        ! operation in float32 (powf, as TensorFlow's Pow)
        opt%lr32 = real(opt%step_lr, real32)
        b1p32 = real(opt%beta_1, real32)**real(opt%step_t, real32)
        b2p32 = real(opt%beta_2, real32)**real(opt%step_t, real32)
        opt%alpha32 = opt%lr32 * sqrt(1 - b2p32) / (1 - b1p32)
      end if
    end if
  end subroutine optimizer_begin

  subroutine optimizer_end(opt)
    type(fkb_optimizer_t), intent(inout) :: opt
    opt%iterations = opt%iterations + 1
  end subroutine optimizer_end

  subroutine optimizer_update(opt, k, i0, w, g)
    !! Weight decay and the update rule for elements i0.. i0+size(w)-1 of variable k: w and g
    !! their values and (clipped) gradients as double; g may be overwritten. Each element's
    !! arithmetic is the same whatever the pieces, so a trainer may pass a variable in pieces
    !! converted from its own precision (cache-sized, instead of double copies of everything).
    type(fkb_optimizer_t), intent(inout), target :: opt
    integer, intent(in) :: k
    integer(int64), intent(in) :: i0
    real(real64), intent(inout), contiguous :: w(:), g(:)
    real(real64) :: lr, t, b2p, alpha, u_t, u_t1, up, up1
    integer(int64) :: n, i1
    n = size(w, kind=int64)
    i1 = i0 + n - 1
    if (opt%single) then
      call update_single_widened(opt, k, i0, w, g)
      return
    end if
    lr = opt%step_lr
    t = opt%step_t
    ! 2. Weight decay (decoupled, as Keras applies it to every optimizer that has one).
    if (opt%weight_decay > 0) then
      ! Keras: float32 (backend/tensorflow/optimizer.py _apply_weight_decay)
      w = w - w * f32(opt%weight_decay) * lr
    end if
    ! 3. The update rule (element-wise loops over contiguous dummies: fkb_optimizer_rules).
    associate (s => opt%slots(k))
      select case (opt%id)
      case (OPT_SGD)
        ! Keras: float32 (optimizers/sgd.py)
        call sgd_rule(n, w, g, s%m(i0:i1), lr, f32(opt%momentum), opt%momentum /= 0, &
                      opt%nesterov)
      case (OPT_ADAM, OPT_ADAMW)
        alpha = opt%step_alpha
        call adam_rule(n, w, g, s%m(i0:i1), s%v(i0:i1), s%vhat(i0:i1), 1 - opt%beta_1, &
                       1 - opt%beta_2, alpha, opt%epsilon, opt%amsgrad)
      case (OPT_RMSPROP)
        call rmsprop_rule(n, w, g, s%m(i0:i1), s%v(i0:i1), s%vhat(i0:i1), lr, opt%rho, &
                          opt%momentum, opt%epsilon, opt%centered)
      case (OPT_ADAGRAD)
        call adagrad_rule(n, w, g, s%v(i0:i1), lr, opt%epsilon)
      case (OPT_NADAM)
        ! Keras: float32 for 0.96, beta_1, beta_2 here (optimizers/nadam.py update_step),
        ! exact in the running product u_product (nadam.py _backend_update_step).
        u_t = f32(opt%beta_1) * (1 - 0.5_real64 * f32(0.96_real64)**t)
        u_t1 = f32(opt%beta_1) * (1 - 0.5_real64 * f32(0.96_real64)**(t + 1))
        up = opt%u_product
        up1 = up * u_t1
        b2p = f32(opt%beta_2)**t
        ! Nadam's moments also use the rounded betas (unlike Adam's).
        call nadam_rule(n, w, g, s%m(i0:i1), s%v(i0:i1), 1 - f32(opt%beta_1), &
                        1 - f32(opt%beta_2), u_t1, 1 - up1, 1 - u_t, 1 - up, lr, 1 - b2p, &
                        opt%epsilon)
      end select
    end associate
  end subroutine optimizer_update

  logical function updates_r32(opt)
    !! Whether this optimizer can run in float32 on float32 variables (Adam, AdamW): a trainer
    !! of a float32 network then sets `single` before the first step and passes its variables
    !! to optimizer_update_r32; otherwise to optimizer_update, widened to double.
    type(fkb_optimizer_t), intent(in) :: opt
    updates_r32 = opt%id == OPT_ADAM .or. opt%id == OPT_ADAMW
  end function updates_r32

  subroutine update_single_widened(opt, k, i0, w, g)
    ! optimizer_update of a `single` optimizer, given the float32 weights and (clipped)
    ! gradients widened to double: the float32 rule in pieces, the weights widened back.
    type(fkb_optimizer_t), intent(inout), target :: opt
    integer, intent(in) :: k
    integer(int64), intent(in) :: i0
    real(real64), intent(inout), contiguous :: w(:), g(:)
    integer(int64), parameter :: PIECE = 1024
    real(real32) :: w32(PIECE), g32(PIECE)
    integer(int64) :: j, m
    do j = 1, size(w, kind=int64), PIECE
      m = min(PIECE, size(w, kind=int64) - j + 1)
      w32(1:m) = real(w(j:j + m - 1), real32)
      g32(1:m) = real(g(j:j + m - 1), real32)
      call optimizer_update_r32(opt, k, i0 + j - 1, w32(1:m), g32(1:m))
      w(j:j + m - 1) = real(w32(1:m), real64)
    end do
  end subroutine update_single_widened

  subroutine optimizer_update_r32(opt, k, i0, w, g)
    !! optimizer_update for float32 weights and gradients of a `single` optimizer: Adam and
    !! AdamW in float32 with a float32 state, as Keras.
    type(fkb_optimizer_t), intent(inout), target :: opt
    integer, intent(in) :: k
    integer(int64), intent(in) :: i0
    real(real32), intent(inout), contiguous :: w(:)
    real(real32), intent(in), contiguous :: g(:)
    integer(int64) :: n, i1
    n = size(w, kind=int64)
    i1 = i0 + n - 1
    ! Keras: float32 for the Python floats 1 - beta_1, 1 - beta_2, epsilon and weight_decay
    ! (each is cast to the variable's dtype where it meets a tensor)
    associate (s => opt%slots32(k))
      call adam_rule_f32(n, w, g, s%m(i0:i1), s%v(i0:i1), s%vhat(i0:i1), &
                         [real(opt%weight_decay, real32), opt%lr32], &
                         real(1 - opt%beta_1, real32), real(1 - opt%beta_2, real32), &
                         opt%alpha32, real(opt%epsilon, real32), opt%amsgrad)
    end associate
  end subroutine optimizer_update_r32

  subroutine read_learning_rate(cfg, opt, default, stat, msg)
    ! learning_rate=NUMBER, or learning_rate=SCHEDULE with the schedule's Keras arguments:
    ! exponential_decay initial_learning_rate decay_steps decay_rate [staircase];
    ! piecewise_constant_decay boundaries=b1,b2,... values=v0,v1,...;
    ! cosine_decay initial_learning_rate decay_steps [alpha warmup_target warmup_steps].
    type(fkb_config_t), intent(inout) :: cfg
    type(fkb_optimizer_t), intent(inout) :: opt
    real(real64), intent(in) :: default
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    character(len=:), allocatable :: text
    type(string_t), allocatable :: f(:)
    integer :: k, ios
    call cfg%get_text('learning_rate', text, stat, msg, default='')
    if (stat /= FKB_OK) return
    select case (text)
    case ('')
      opt%learning_rate = default
    case ('exponential_decay', 'cosine_decay')
      opt%schedule = text
      call cfg%get_real('initial_learning_rate', opt%learning_rate, stat, msg)
      if (stat == FKB_OK) call cfg%get_real('decay_steps', opt%decay_steps, stat, msg)
      if (stat /= FKB_OK) return
      if (.not. opt%decay_steps > 0) then
        call set_error(stat, msg, FKB_ERR_ARGUMENT, cfg%where // ': decay_steps must be > 0')
        return
      end if
      if (text == 'exponential_decay') then
        call cfg%get_real('decay_rate', opt%decay_rate, stat, msg)
        if (stat == FKB_OK) call cfg%get_bool('staircase', opt%staircase, stat, msg, &
                                              default=.false.)
      else
        call cfg%get_real('alpha', opt%alpha, stat, msg, default=0.0_real64)
        if (stat == FKB_OK .and. cfg%has('warmup_target')) then
          opt%has_warmup = .true.
          call cfg%get_real('warmup_target', opt%warmup_target, stat, msg)
        end if
        if (stat == FKB_OK) call cfg%get_real('warmup_steps', opt%warmup_steps, stat, msg, &
                                              default=0.0_real64)
      end if
    case ('piecewise_constant_decay')
      opt%schedule = text
      call cfg%get_text('boundaries', text, stat, msg)
      if (stat /= FKB_OK) return
      f = split_fields(text, ',')
      allocate(opt%boundaries(size(f)))
      ios = 0
      do k = 1, size(f)
        if (ios == 0) read (f(k)%s, *, iostat=ios) opt%boundaries(k)
      end do
      call cfg%get_text('values', text, stat, msg)
      if (stat /= FKB_OK) return
      f = split_fields(text, ',')
      allocate(opt%values(size(f)))
      do k = 1, size(f)
        if (ios == 0) read (f(k)%s, *, iostat=ios) opt%values(k)
      end do
      if (ios /= 0 .or. size(opt%values) /= size(opt%boundaries) + 1) then
        call set_error(stat, msg, FKB_ERR_ARGUMENT, cfg%where // ': piecewise_constant_decay &
                       &needs numbers, one more value than boundaries')
        return
      end if
      opt%learning_rate = opt%values(1)
    case default
      read (text, *, iostat=ios) opt%learning_rate
      if (ios /= 0 .or. verify(text, '0123456789+-.eEinfatyINFATY') /= 0) then
        call set_error(stat, msg, FKB_ERR_UNSUPPORTED, cfg%where // ": learning_rate '" // &
                       text // "' is neither a number nor a known schedule")
      end if
    end select
  end subroutine read_learning_rate

  pure real(real64) function learning_rate_at(opt, step) result(lr)
    !! The learning rate for the update after `step` earlier ones, with Keras' formulas in
    !! float32 arithmetic as Keras evaluates its schedules (keras/src/optimizers/schedules:
    !! convert_to_tensor of the Python floats gives float32 tensors).
    type(fkb_optimizer_t), intent(in) :: opt
    integer(int64), intent(in) :: step
    integer, parameter :: sp = real32
    real(sp), parameter :: PI = 3.14159265358979323846_sp
    real(sp) :: p, s, target, init, l
    integer :: k
    lr = opt%learning_rate
    if (.not. allocated(opt%schedule)) return
    s = real(step, sp)
    init = real(opt%learning_rate, sp)
    select case (opt%schedule)
    case ('exponential_decay')
      p = s / real(opt%decay_steps, sp)
      if (opt%staircase) p = aint(p)
      l = init * real(opt%decay_rate, sp)**p
    case ('piecewise_constant_decay')
      l = real(opt%values(size(opt%values)), sp)
      do k = size(opt%boundaries), 1, -1
        if (s <= real(opt%boundaries(k), sp)) l = real(opt%values(k), sp)
      end do
    case default   ! cosine_decay
      target = init
      if (opt%has_warmup) then
        s = min(s, real(opt%decay_steps + opt%warmup_steps, sp))
        if (s < real(opt%warmup_steps, sp)) then
          lr = real((real(opt%warmup_target, sp) - init) * (s / real(opt%warmup_steps, sp)) &
                    + init, real64)
          return
        end if
        s = s - real(opt%warmup_steps, sp)
        target = real(opt%warmup_target, sp)
      end if
      p = min(s, real(opt%decay_steps, sp)) / real(opt%decay_steps, sp)
      l = target * ((1 - real(opt%alpha, sp)) * (0.5_sp * (1 + cos(PI * p))) + &
                    real(opt%alpha, sp))
    end select
    lr = real(l, real64)
  end function learning_rate_at

  subroutine init_slots(opt, sizes)
    type(fkb_optimizer_t), intent(inout) :: opt
    integer(int64), intent(in) :: sizes(:)
    integer :: k
    integer(int64) :: n
    if (opt%single) then
      allocate(opt%slots32(size(sizes)))
      do k = 1, size(sizes)
        allocate(opt%slots32(k)%m(sizes(k)), opt%slots32(k)%v(sizes(k)), &
                 opt%slots32(k)%vhat(sizes(k)))
        opt%slots32(k)%m = 0
        opt%slots32(k)%v = 0
        opt%slots32(k)%vhat = 0
      end do
      return
    end if
    allocate(opt%slots(size(sizes)))
    do k = 1, size(sizes)
      n = sizes(k)
      allocate(opt%slots(k)%m(n), opt%slots(k)%v(n), opt%slots(k)%vhat(n))
      opt%slots(k)%m = 0
      opt%slots(k)%v = 0
      opt%slots(k)%vhat = 0
      ! Keras: float32 (initializers/constant_initializers.py via adagrad.py)
      if (opt%id == OPT_ADAGRAD) opt%slots(k)%v = f32(opt%initial_accumulator_value)
    end do
  end subroutine init_slots

  function optimizer_state(opt) result(slots)
    !! The state of every variable as double arrays, m, v, vhat for each in turn (what a
    !! `.fkb` file stores); none before the first step.
    type(fkb_optimizer_t), intent(in) :: opt
    type(slot_t), allocatable :: slots(:)
    integer :: k
    allocate(slots(0))
    if (allocated(opt%slots32)) then
      do k = 1, size(opt%slots32)
        associate (s => opt%slots32(k))
          slots = [slots, slot_t(real(s%m, real64)), slot_t(real(s%v, real64)), &
                   slot_t(real(s%vhat, real64))]
        end associate
      end do
    else if (allocated(opt%slots)) then
      do k = 1, size(opt%slots)
        slots = [slots, slot_t(opt%slots(k)%m), slot_t(opt%slots(k)%v), &
                 slot_t(opt%slots(k)%vhat)]
      end do
    end if
  end function optimizer_state

  subroutine optimizer_set_state(opt, slots)
    !! Restores optimizer_state's arrays (3 per variable; a `single` optimizer rounds them to
    !! float32, exact for a state it saved itself).
    type(fkb_optimizer_t), intent(inout) :: opt
    type(slot_t), intent(in) :: slots(:)
    integer :: k, n
    n = size(slots) / 3
    if (opt%single) then
      if (allocated(opt%slots32)) deallocate(opt%slots32)
      allocate(opt%slots32(n))
      do k = 1, n
        opt%slots32(k)%m = real(slots(3 * k - 2)%m, real32)
        opt%slots32(k)%v = real(slots(3 * k - 1)%m, real32)
        opt%slots32(k)%vhat = real(slots(3 * k)%m, real32)
      end do
    else
      if (allocated(opt%slots)) deallocate(opt%slots)
      allocate(opt%slots(n))
      do k = 1, n
        opt%slots(k)%m = slots(3 * k - 2)%m
        opt%slots(k)%v = slots(3 * k - 1)%m
        opt%slots(k)%vhat = slots(3 * k)%m
      end do
    end if
  end subroutine optimizer_set_state

  elemental real(real64) function f32(x)
    !! x rounded to float32, as Keras' casts of Python floats do.
    real(real64), intent(in) :: x
    f32 = real(real(x, real32), real64)
  end function f32

  pure function lower(s) result(r)
    character(len=*), intent(in) :: s
    character(len=len(s)) :: r
    integer :: i
    r = s
    do i = 1, len(s)
      if (s(i:i) >= 'A' .and. s(i:i) <= 'Z') r(i:i) = achar(iachar(s(i:i)) + 32)
    end do
  end function lower

end module fkb_optimizer
