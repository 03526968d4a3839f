!! Training a loaded model in place: the loss, the optimizer and its state, and one step of
!! forward (training mode) -> loss -> backward -> update, batch-major with GEMM.
!!
!! Any model whose layers have a backward pass trains: chains and Functional graphs (several
!! inputs and outputs, merge layers, values used by several layers), and last-axis layers on
!! (steps, channels) data (a layer sees x(n_in, reps*batch), as at inference). The training
!! plan is computed once at compile: the layers run in file order (an execution order), every
!! value keeps its activation buffer for the backward pass, and the gradients of values live in
!! a few buffers assigned greedily in reverse order (a chain ping-pongs between two, as before).
!! A value used by several layers receives the sum of their gradients (the later consumers'
!! first, then each earlier one added). Buffers grow with the batch size and are kept: a step
!! of an unchanged batch size allocates nothing for the layers.
!!
!! Losses: one spec for every output ("mse"), or one per output separated by ';'
!! ("mse;huber delta=0.5"), each with an optional `weight=W` (Keras' loss_weights): total
!! loss = sum_k W_k loss_k, each loss_k reduced as Keras does ("sum over batch size"; an output
!! of shape (steps, C) is a batch of batch*steps rows of C values). Keras' crossentropy-from-
!! logits shortcut applies per output whose value comes straight from a sigmoid/softmax Dense
!! or Activation layer and is used by nothing else.
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
  use fkb_tensor, only: fkb_tensor_t, FKB_FLOAT32, FKB_FLOAT64
  use fkb_model, only: fkb_model_t, train_record_t
  use fkb_text, only: string_t, split_fields
  use fkb_config, only: fkb_config_t, real_text
  use fkb_loss, only: fkb_loss_t, parse_loss, loss_and_gradient, LOSS_BCE, LOSS_CCE, &
                      LOSS_SPARSE_CCE
  use fkb_optimizer, only: fkb_optimizer_t, slot_t, parse_optimizer, optimizer_step, clips, &
                           optimizer_begin, optimizer_update, optimizer_end, updates_r32, &
                           optimizer_update_r32, optimizer_state, optimizer_set_state
  use fkb_activation, only: ACT_SOFTMAX, fkb_activation_t
  use fkb_layer, only: fkb_layer_t, view32_t, view64_t
  use fkb_layer_dense, only: fkb_dense_t
  use fkb_layer_activation, only: fkb_activation_layer_t
  use fkb_layer_merge, only: fkb_merge_t
  use fkb_refs, only: fkb_ref64
  use fkb_random, only: mix64
  use fkb_custom_loss_m, only: fkb_custom_loss
  use omp_lib, only: omp_in_parallel
  implicit none
  private
  public :: fkb_trainer_t, trainer_compile, trainer_step, trainer_step_refs, trainer_record, &
            trainer_restore, trainer_n_targets, weighted_loss_spec

  integer, parameter :: ACT_SIGMOID_ID = 14   !! fkb_activation's id of sigmoid

  type :: grad_set
    type(fkb_tensor_t), allocatable :: g(:)
  end type grad_set

  type :: out_t
    !! One output's part of the loss.
    type(fkb_loss_t) :: loss
    real(real64) :: weight = 1          !! Keras' loss_weights entry
    integer :: value = 0                !! its value id
    logical :: shortcut = .false.       !! crossentropy from the producer's pre-activation
    integer :: logits = 0               !! shortcut: 0 = the Dense cache, else this value
    integer(int64) :: width = 0, reps = 1   !! last axis, positions per sample
    integer :: gbuf = 0                 !! its gradient buffer (0: the output is an input)
  end type out_t

  type :: bstep_t
    !! The backward step of one layer: where dL/dy is, where each dL/dx goes.
    integer :: dy = 0                     !! gradient buffer of its output (0: none reaches it)
    integer, allocatable :: dx(:)         !! per input: buffer the layer writes dL/dx into
    integer, allocatable :: acc(:)        !! per input: 0, or the value's buffer to add it to
    logical, allocatable :: need(:)       !! per input: dL/dx wanted (not a network input)
    logical :: dz_given = .false.         !! the loss gives dL/d(pre-activation)
  end type bstep_t

  type :: fkb_trainer_t
    type(fkb_loss_t) :: loss        !! the first output's loss (id 0 and spec 'custom': custom)
    character(len=:), allocatable :: loss_spec  !! as compiled, for the file
    type(fkb_optimizer_t) :: opt
    character(len=:), allocatable :: opt_spec   !! as compiled, for the file
    integer(int64) :: seed = 0
    type(out_t), allocatable :: outs(:)
    type(bstep_t), allocatable :: bsteps(:)
    logical, allocatable :: logit_layer(:)      !! produces a shortcut output's logits
    integer, allocatable :: absorbs(:)          !! per layer: 0, or the Activation layer whose
                                                !! output it computes (act(Wx + b), one pass)
    type(fkb_activation_t), allocatable :: absorbed_act(:)   !! ... and that activation
    logical, allocatable :: in_place(:)         !! an absorbed Activation layer (see absorbs)
    integer(int64), allocatable :: vrows(:)     !! per-sample size of every value
    integer(int64), allocatable :: gwidth(:)    !! per-sample width of each gradient buffer
    integer :: max_src = 1
    type(fkb_tensor_t), allocatable :: acts(:), caches(:)   !! per value, per layer
    type(fkb_tensor_t), allocatable :: d(:)     !! gradient buffers
    type(grad_set), allocatable :: grads(:)
    type(view32_t), allocatable :: vx32(:), vdx32(:)   !! inputs of a merge layer, their grads
    type(view64_t), allocatable :: vx64(:), vdx64(:)
    real(real64), allocatable :: y64(:), g64(:), wexp(:)   !! the loss's double copies
    class(fkb_custom_loss), allocatable :: custom   !! replaces the built-in loss if set
    type(slot_t), allocatable :: vars(:), gs(:)     !! double copies for the optimizer, kept
  end type fkb_trainer_t

  !> Tensors from this many elements are updated on all threads (Adam: ~30 us on one core).
  integer(int64), parameter :: PARALLEL_PIECES = 2_int64**16

  interface to_slot
    module procedure to_slot_r32, to_slot_r64
  end interface to_slot
  interface from_slot
    module procedure from_slot_r32, from_slot_r64
  end interface from_slot
  interface update_in_pieces
    module procedure update_in_pieces_r32, update_in_pieces_r64
  end interface update_in_pieces
  interface all_finite_values
    module procedure all_finite_r32, all_finite_r64
  end interface all_finite_values

contains

  subroutine trainer_compile(tr, model, optimizer, loss, stat, msg, custom)
    !! Sets the optimizer and loss (specs as text, see above) and computes the training plan;
    !! refuses models with a layer that cannot be trained yet, naming it.
    type(fkb_trainer_t), intent(out) :: tr
    type(fkb_model_t), intent(in) :: model
    character(len=*), intent(in) :: optimizer, loss
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    class(fkb_custom_loss), intent(in), optional :: custom
    integer :: i, j, no
    integer, allocatable :: outs(:)
    call parse_optimizer(optimizer, tr%opt, stat, msg)
    if (stat /= FKB_OK) return
    ! Adam/AdamW on float32 weights: float32 state and arithmetic, as Keras computes them
    tr%opt%single = model%dtype == FKB_FLOAT32 .and. updates_r32(tr%opt)
    tr%opt_spec = optimizer
    outs = model%output_values()
    no = size(outs)
    if (present(custom)) then
      ! The built-in spec is kept for the file only ("custom"), the loss is the user's.
      if (no /= 1) then
        call set_error(stat, msg, FKB_ERR_UNSUPPORTED, 'a custom loss takes one output; this &
                       &model has ' // int_text(int(no, int64)))
        return
      end if
      allocate(tr%custom, source=custom)
      allocate(tr%outs(1))
      tr%loss%spec = 'custom'
      tr%loss%id = 0
      tr%loss_spec = 'custom'
    else
      call parse_losses(loss, no, tr%outs, stat, msg)
      if (stat /= FKB_OK) return
      tr%loss = tr%outs(1)%loss
      tr%loss_spec = loss
    end if
    if (model%n_layers == 0) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, 'the model has no layers to train')
      return
    end if
    do i = 1, model%n_layers
      associate (l => model%layers(i)%l)
        if (.not. l%supports_training()) then
          call set_error(stat, msg, FKB_ERR_UNSUPPORTED, "layer '" // l%name // "' (" // &
                         l%type_name // ') has no backward pass yet: this model cannot be &
                         &trained in FKB')
          return
        end if
        if (size(model%layers(i)%src) > 1) then
          j = 0
          select type (l)
          type is (fkb_merge_t)
            j = 1
          end select
          if (j == 0) then
            call set_error(stat, msg, FKB_ERR_UNSUPPORTED, "layer '" // l%name // "' (" // &
                           l%type_name // ') takes several inputs and has no backward pass &
                           &for them: this model cannot be trained in FKB')
            return
          end if
        end if
      end associate
    end do
    call build_train_plan(tr, model, outs)
  end subroutine trainer_compile

  subroutine parse_losses(text, no, outs, stat, msg)
    ! One loss spec for every output, or one per output separated by ';'; each item may carry
    ! weight=W.
    character(len=*), intent(in) :: text
    integer, intent(in) :: no
    type(out_t), allocatable, intent(out) :: outs(:)
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(string_t), allocatable :: items(:), f(:)
    type(fkb_config_t) :: cfg
    character(len=:), allocatable :: rest
    integer :: k, j, m
    real(real64) :: w
    stat = FKB_OK
    items = split_fields(text, ';')
    m = size(items)
    if (m == 0) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, 'empty loss')
      return
    end if
    if (m /= 1 .and. m /= no) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, 'loss: ' // int_text(int(m, int64)) // &
                     " losses (separated by ';') for a model with " // &
                     int_text(int(no, int64)) // ' outputs; give one for all or one per output')
      return
    end if
    allocate(outs(no))
    do k = 1, m
      f = split_fields(items(k)%s, ' ')
      rest = ''
      w = 1
      cfg = fkb_config_t()
      cfg%where = 'loss ' // int_text(int(k, int64))
      do j = 1, size(f)
        if (index(f(j)%s, 'weight=') == 1) then
          call cfg%set('weight', f(j)%s(8:))
        else
          if (len(rest) > 0) rest = rest // ' '
          rest = rest // f(j)%s
        end if
      end do
      call cfg%get_real('weight', w, stat, msg, default=1.0_real64)
      if (stat /= FKB_OK) return
      if (.not. (abs(w) <= huge(w)) .or. w < 0) then
        call set_error(stat, msg, FKB_ERR_ARGUMENT, cfg%where // ': weight must be a finite &
                       &number >= 0')
        return
      end if
      call parse_loss(rest, outs(k)%loss, stat, msg)
      if (stat /= FKB_OK) then
        if (m > 1) msg = 'loss of output ' // int_text(int(k, int64)) // ': ' // msg
        return
      end if
      outs(k)%weight = w
    end do
    if (m == 1) then
      do k = 2, no
        outs(k)%loss = outs(1)%loss
        outs(k)%weight = outs(1)%weight
      end do
    end if
  end subroutine parse_losses

  function weighted_loss_spec(loss, weights) result(spec)
    !! A loss spec with Keras' loss_weights folded in: one item per weight ("mse" with
    !! [1, 0.5] -> "mse weight=1.0;mse weight=0.5"; "mse;mae" -> "mse weight=1.0;mae weight=0.5").
    !! A weight already in an item is replaced. Sizes are checked by trainer_compile.
    character(len=*), intent(in) :: loss
    real(real64), intent(in) :: weights(:)
    character(len=:), allocatable :: spec
    type(string_t), allocatable :: items(:), f(:)
    integer :: k, j
    items = split_fields(loss, ';')
    spec = ''
    if (size(items) == 0) return
    if (size(items) /= 1 .and. size(items) /= size(weights)) then
      spec = loss   ! refused by trainer_compile, with the counts
      return
    end if
    do k = 1, size(weights)
      if (k > 1) spec = spec // ';'
      f = split_fields(items(min(k, size(items)))%s, ' ')
      do j = 1, size(f)
        if (index(f(j)%s, 'weight=') == 1) cycle
        spec = spec // f(j)%s // ' '
      end do
      spec = spec // 'weight=' // real_text(weights(k))
    end do
  end function weighted_loss_spec

  subroutine build_train_plan(tr, model, outs)
    ! The outputs' loss views and shortcuts, and the gradient buffers of the backward pass.
    type(fkb_trainer_t), intent(inout) :: tr
    type(fkb_model_t), intent(in) :: model
    integer, intent(in) :: outs(:)
    integer :: ni, nlay, nv, i, j, k, v, u, p, act, nbuf
    integer, allocatable :: nuse(:), gb(:)
    integer(int64), allocatable :: shp(:), width(:)
    logical, allocatable :: busy(:)
    ni = model%n_graph_inputs()
    nlay = model%n_layers
    nv = ni + nlay
    allocate(tr%vrows(nv), nuse(nv), gb(nv), tr%logit_layer(nlay), tr%bsteps(nlay))
    do v = 1, nv
      tr%vrows(v) = model%value_size(v)
    end do
    nuse = 0
    do i = 1, nlay
      do j = 1, size(model%layers(i)%src)
        nuse(model%layers(i)%src(j)) = nuse(model%layers(i)%src(j)) + 1
      end do
      tr%max_src = max(tr%max_src, size(model%layers(i)%src))
    end do
    do k = 1, size(outs)
      nuse(outs(k)) = nuse(outs(k)) + 1
    end do
    allocate(tr%vx32(tr%max_src), tr%vdx32(tr%max_src), tr%vx64(tr%max_src), &
             tr%vdx64(tr%max_src))
    ! Outputs: the loss sees a value of shape (..., C) as rows of C values.
    tr%logit_layer = .false.
    do k = 1, size(outs)
      associate (o => tr%outs(k))
        v = outs(k)
        o%value = v
        shp = model%value_shape(v)
        o%width = shp(size(shp))
        o%reps = tr%vrows(v) / o%width
        ! Keras computes any crossentropy from the pre-activation values when the output
        ! comes straight from a sigmoid or softmax activation, whatever from_logits says (the
        ! activation attaches `_keras_logits`, which keras/src/backend/tensorflow/nn.py
        ! _get_logits prefers); so do we, for the same losses and gradients. Only where the
        ! value goes nowhere else (its gradient is then the loss's alone).
        act = 0
        o%logits = 0
        if (v > ni .and. .not. allocated(tr%custom)) then
          p = v - ni
          select type (l => model%layers(p)%l)
          type is (fkb_dense_t)
            act = l%act%id
          type is (fkb_activation_layer_t)
            act = l%act%id
            o%logits = model%layers(p)%src(1)
          end select
          o%shortcut = (o%loss%id == LOSS_BCE .or. o%loss%id == LOSS_CCE .or. &
                        o%loss%id == LOSS_SPARSE_CCE) .and. (act == ACT_SIGMOID_ID .or. &
                        act == ACT_SOFTMAX) .and. nuse(v) == 1
          if (o%shortcut) then
            tr%logit_layer(p) = .true.
            tr%bsteps(p)%dz_given = .true.
          end if
        end if
      end associate
    end do
    ! A linear Dense whose output only an Activation layer of the ReLU family reads computes
    ! that layer's output itself (the activation applied in the product's registers, as at
    ! inference), and the Activation layer's backward pass runs from its output, in place in
    ! its output gradient's buffer: two passes over the batch and the Dense's output saved
    ! (the same bits: see derivative_from_output). SPCAM-like model, Adam, batch 256: the
    ! Activation layers' copy, apply and gradient passes were ~6% of a one-thread step.
    allocate(tr%absorbs(nlay), tr%absorbed_act(nlay), tr%in_place(nlay))
    tr%absorbs = 0
    tr%in_place = .false.
    do i = 1, nlay
      select type (l => model%layers(i)%l)
      type is (fkb_activation_layer_t)
        u = model%layers(i)%src(1)
        if (size(model%layers(i)%src) /= 1) cycle
        if (u <= ni .or. .not. l%runs_in_place()) cycle
        p = u - ni
        if (nuse(u) /= 1 .or. size(model%layers(p)%src) /= 1 .or. tr%logit_layer(p) .or. &
            .not. model%layers(p)%l%absorbs_activation()) cycle
        if (.not. model%layers(i)%l%activation_only(tr%absorbed_act(p))) cycle
        tr%absorbs(p) = i
        tr%in_place(i) = .true.
      end select
    end do
    ! Gradient buffers, in reverse order: a value's buffer is taken by its first writer (the
    ! loss or its last consumer) and freed once its producer's backward has read it; a
    ! consumer finding it taken writes into a buffer of its own, added right after.
    allocate(width(0), busy(0))
    nbuf = 0
    gb = 0
    do k = 1, size(outs)
      v = outs(k)
      if (v > ni) then
        gb(v) = pick(tr%vrows(v))
        tr%outs(k)%gbuf = gb(v)
      end if
    end do
    do i = nlay, 1, -1
      v = ni + i
      associate (bs => tr%bsteps(i), src => model%layers(i)%src)
        allocate(bs%dx(size(src)), bs%acc(size(src)), bs%need(size(src)))
        bs%dx = 0
        bs%acc = 0
        bs%need = .false.
        if (gb(v) == 0) cycle   ! no gradient reaches this layer's output
        bs%dy = gb(v)
        if (tr%in_place(i)) then   ! its input's gradient in its output's buffer, in place
          u = src(1)
          bs%need(1) = .true.
          bs%dx(1) = gb(v)
          gb(u) = gb(v)
          gb(v) = 0
          cycle
        end if
        do j = 1, size(src)
          u = src(j)
          bs%need(j) = u > ni
          if (u > ni .and. gb(u) == 0) then
            gb(u) = pick(tr%vrows(u))
            bs%dx(j) = gb(u)
          else
            bs%dx(j) = pick(tr%vrows(u))   ! a buffer of its own (added, or discarded)
            if (u > ni) bs%acc(j) = gb(u)
          end if
        end do
        do j = 1, size(src)
          if (bs%acc(j) > 0 .or. .not. bs%need(j)) busy(bs%dx(j)) = .false.
        end do
        busy(gb(v)) = .false.
        gb(v) = 0
      end associate
    end do
    tr%gwidth = width
    allocate(tr%d(nbuf))

  contains

    integer function pick(need)
      ! The narrowest free buffer wide enough, else the widest free one widened, else a new one.
      integer(int64), intent(in) :: need
      integer :: b
      pick = 0
      do b = 1, nbuf
        if (busy(b) .or. width(b) < need) cycle
        if (pick == 0) then
          pick = b
        else if (width(b) < width(pick)) then
          pick = b
        end if
      end do
      if (pick == 0) then
        do b = 1, nbuf
          if (busy(b)) cycle
          if (pick == 0) then
            pick = b
          else if (width(b) > width(pick)) then
            pick = b
          end if
        end do
      end if
      if (pick == 0) then
        nbuf = nbuf + 1
        width = [width, need]
        busy = [busy, .false.]
        pick = nbuf
      end if
      width(pick) = max(width(pick), need)
      busy(pick) = .true.
    end function pick

  end subroutine build_train_plan

  integer(int64) function trainer_n_targets(tr, k)
    !! Values of output k's targets per sample: its size, or (sparse categorical) one class
    !! index per row.
    type(fkb_trainer_t), intent(in) :: tr
    integer, intent(in) :: k
    trainer_n_targets = tr%outs(k)%reps * tr%outs(k)%width
    if (tr%outs(k)%loss%id == LOSS_SPARSE_CCE .and. .not. allocated(tr%custom) .and. &
        tr%loss%id /= 0) trainer_n_targets = tr%outs(k)%reps
  end function trainer_n_targets

  subroutine trainer_step(tr, model, x, t, w, value, apply, stat, msg, gradients, inference)
    !! One training step of a one-input, one-output model on x(n_in, batch) with targets
    !! t(n_targets, batch) and sample weights w (size batch or 0): see trainer_step_refs.
    type(fkb_trainer_t), intent(inout) :: tr
    type(fkb_model_t), intent(inout) :: model
    real(real64), intent(in), contiguous, target :: x(:, :), t(:, :)
    real(real64), intent(in) :: w(:)
    real(real64), intent(out) :: value
    logical, intent(in) :: apply
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(slot_t), intent(inout), optional, allocatable :: gradients(:)
    logical, intent(in), optional :: inference
    type(fkb_ref64) :: xs(1), ts(1)
    xs(1)%p(1:size(x)) => x
    xs(1)%rows = size(x, 1, int64)
    xs(1)%cols = size(x, 2, int64)
    ts(1)%p(1:size(t)) => t
    ts(1)%rows = size(t, 1, int64)
    ts(1)%cols = size(t, 2, int64)
    call trainer_step_refs(tr, model, xs, ts, w, value, apply, stat, msg, gradients, inference)
  end subroutine trainer_step

  subroutine trainer_step_refs(tr, model, xs, ts, w, value, apply, stat, msg, gradients, &
                               inference)
    !! One training step on inputs xs(k) (values of input k per sample, batch) with targets
    !! ts(k) (n_targets of output k, batch) and sample weights w (size batch or 0, for every
    !! output): value = the loss before the update. With apply false the weights stay as they
    !! are and `gradients` (if present) receives dL/dparams, one flat array per tensor in file
    !! order. A NaN or infinite loss is reported and nothing changes.
    type(fkb_trainer_t), intent(inout) :: tr
    type(fkb_model_t), intent(inout) :: model
    type(fkb_ref64), intent(in) :: xs(:), ts(:)
    real(real64), intent(in) :: w(:)
    real(real64), intent(out) :: value
    logical, intent(in) :: apply
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(slot_t), intent(inout), optional, allocatable :: gradients(:)
    logical, intent(in), optional :: inference   !! loss only, layers in inference mode
    integer(int64) :: n, n_t
    integer :: ni, no, k
    logical :: infer
    stat = FKB_OK
    value = 0
    ni = model%n_graph_inputs()
    no = size(tr%outs)
    if (size(xs) /= ni) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, 'the network has ' // &
                     int_text(int(ni, int64)) // ' input(s), got ' // &
                     int_text(int(size(xs), int64)) // ' input array(s)')
      return
    end if
    if (size(ts) /= no) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, 'the network has ' // &
                     int_text(int(no, int64)) // ' output(s), got ' // &
                     int_text(int(size(ts), int64)) // ' target array(s)')
      return
    end if
    n = xs(1)%cols
    if (n < 1) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, 'batch size must be at least 1')
      return
    end if
    do k = 1, ni
      if (.not. associated(xs(k)%p)) then
        call set_error(stat, msg, FKB_ERR_ARGUMENT, 'input ' // int_text(int(k, int64)) // &
                       ': no array given')
      else if (xs(k)%rows /= tr%vrows(k)) then
        if (ni == 1) then
          call set_error(stat, msg, FKB_ERR_SHAPE, 'x has ' // int_text(xs(k)%rows) // &
                         ' features per sample, the network takes ' // int_text(tr%vrows(k)))
        else
          call set_error(stat, msg, FKB_ERR_SHAPE, 'input ' // int_text(int(k, int64)) // &
                         ' has ' // int_text(xs(k)%rows) // ' values per sample, the network &
                         &takes ' // int_text(tr%vrows(k)))
        end if
      else if (xs(k)%cols /= n) then
        call set_error(stat, msg, FKB_ERR_SHAPE, 'input ' // int_text(int(k, int64)) // &
                       ' holds ' // int_text(xs(k)%cols) // ' samples; every input and &
                       &target must hold the batch size ' // int_text(n))
      end if
      if (stat /= FKB_OK) return
    end do
    do k = 1, no
      n_t = trainer_n_targets(tr, k)
      if (.not. associated(ts(k)%p)) then
        call set_error(stat, msg, FKB_ERR_ARGUMENT, 'target ' // int_text(int(k, int64)) // &
                       ': no array given')
      else if (ts(k)%rows /= n_t .or. ts(k)%cols /= n) then
        if (no == 1) then
          call set_error(stat, msg, FKB_ERR_SHAPE, 'y must be ' // int_text(n_t) // ' x ' // &
                         int_text(n) // ' (targets per sample x batch), got ' // &
                         int_text(ts(k)%rows) // ' x ' // int_text(ts(k)%cols))
        else
          call set_error(stat, msg, FKB_ERR_SHAPE, 'targets of output ' // &
                         int_text(int(k, int64)) // " ('" // &
                         model%value_name(tr%outs(k)%value) // "') must be " // &
                         int_text(n_t) // ' x ' // int_text(n) // &
                         ' (targets per sample x batch), got ' // int_text(ts(k)%rows) // &
                         ' x ' // int_text(ts(k)%cols))
        end if
      end if
      if (stat /= FKB_OK) return
    end do
    if (size(w) /= 0 .and. size(w, kind=int64) /= n) then
      call set_error(stat, msg, FKB_ERR_SHAPE, 'sample weights: one per sample needed')
      return
    end if
    if (tr%loss%id == 0 .and. .not. allocated(tr%custom)) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, 'this network was trained with a custom loss: &
                     &call set_custom_loss first')
      return
    end if
    if (allocated(tr%custom) .and. no /= 1) then
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, 'a custom loss takes one output')
      return
    end if
    infer = .false.
    if (present(inference)) infer = inference
    if (model%dtype == FKB_FLOAT64) then
      call step_r64(tr, model, xs, ts, w, value, apply .and. .not. infer, stat, msg, gradients, &
                    infer)
    else
      call step_r32(tr, model, xs, ts, w, value, apply .and. .not. infer, stat, msg, gradients, &
                    infer)
    end if
  end subroutine trainer_step_refs

  function trainer_record(tr) result(rec)
    !! The training state as a `.fkb` file stores it (format 1.1).
    type(fkb_trainer_t), intent(in) :: tr
    type(train_record_t) :: rec
    character(len=*), parameter :: KIND(3) = ['m   ', 'v   ', 'vhat']
    integer :: k, j
    rec%optimizer = tr%opt_spec
    rec%loss = tr%loss_spec
    if (tr%loss%id == 0) rec%loss = 'custom'
    rec%state = 'iterations=' // int_text(tr%opt%iterations) // ' u_product=' // &
                real_text(tr%opt%u_product) // ' seed=' // int_text(tr%seed)
    rec%slots = optimizer_state(tr%opt)
    allocate(rec%slot_names(0))
    do k = 1, size(rec%slots) / 3
      do j = 1, 3
        rec%slot_names = [rec%slot_names, string_t(trim(KIND(j)) // '.' // &
                          int_text(int(k, int64)))]
      end do
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
    call optimizer_set_state(tr%opt, rec%slots)
  end subroutine trainer_restore

  subroutine loss_view(tr, k, n, c, r, trows)
    ! Output k as the loss sees it: c values per row, r rows (batch n), trows target rows.
    type(fkb_trainer_t), intent(in) :: tr
    integer, intent(in) :: k
    integer(int64), intent(in) :: n
    integer(int64), intent(out) :: c, r, trows
    if (allocated(tr%custom)) then
      c = tr%vrows(tr%outs(k)%value)   ! a custom loss sees whole samples
      r = n
      trows = c
    else
      c = tr%outs(k)%width
      r = tr%outs(k)%reps * n
      trows = merge(1_int64, c, tr%outs(k)%loss%id == LOSS_SPARSE_CCE)
    end if
  end subroutine loss_view

  subroutine grow64(a, size_)
    ! a holds at least size_ values (kept when it already does).
    real(real64), allocatable, intent(inout) :: a(:)
    integer(int64), intent(in) :: size_
    if (allocated(a)) then
      if (size(a, kind=int64) >= size_) return
      deallocate(a)
    end if
    allocate(a(max(1_int64, size_)))
  end subroutine grow64

  elemental real(real64) function sign_or_zero(x)
    real(real64), intent(in) :: x
    sign_or_zero = merge(1.0_real64, merge(-1.0_real64, 0.0_real64, x < 0), x > 0)
  end function sign_or_zero

  function trainable_sizes(model) result(sizes)
    !! Element counts of the model's trainable tensors, in file order.
    type(fkb_model_t), intent(in) :: model
    integer(int64), allocatable :: sizes(:)
    integer :: i, k
    allocate(sizes(0))
    do i = 1, model%n_layers
      if (.not. allocated(model%layers(i)%l%params)) cycle
      do k = 1, size(model%layers(i)%l%params)
        if (model%layers(i)%l%tensor_trainable(k)) &
          sizes = [sizes, model%layers(i)%l%params(k)%numel()]
      end do
    end do
  end function trainable_sizes

  ! One optimizer update of variable k (weights w, gradient g in the network's precision) in
  ! pieces of PIECE elements converted to double in L1-sized buffers: the same arithmetic as
  ! double copies of whole tensors, without their passes over memory (a quarter of a step).
  subroutine update_in_pieces_r32(opt, k, w, g)
    type(fkb_optimizer_t), intent(inout) :: opt
    integer, intent(in) :: k
    real(real32), intent(inout), contiguous :: w(:)
    real(real32), intent(in), contiguous :: g(:)
    integer(int64), parameter :: PIECE = 1024
    real(real64) :: wb(PIECE), gb(PIECE)
    integer(int64) :: i0, m
    logical :: direct
    direct = opt%single   ! (Adam, AdamW: in float32, as Keras)
    ! (the pieces are independent: over the threads for a large tensor)
    !$omp parallel do schedule(static) private(m, wb, gb) &
    !$omp   if (size(w, kind=int64) >= PARALLEL_PIECES .and. .not. omp_in_parallel())
    do i0 = 1, size(w, kind=int64), PIECE
      m = min(PIECE, size(w, kind=int64) - i0 + 1)
      if (direct) then
        call optimizer_update_r32(opt, k, i0, w(i0:i0 + m - 1), g(i0:i0 + m - 1))
        cycle
      end if
      call copy_r32_r64(m, w(i0:i0 + m - 1), wb)
      call copy_r32_r64(m, g(i0:i0 + m - 1), gb)
      call optimizer_update(opt, k, i0, wb(1:m), gb(1:m))
      call copy_r64_r32(m, wb, w(i0:i0 + m - 1))
    end do
    !$omp end parallel do
  end subroutine update_in_pieces_r32

  subroutine update_in_pieces_r64(opt, k, w, g)
    type(fkb_optimizer_t), intent(inout) :: opt
    integer, intent(in) :: k
    real(real64), intent(inout), contiguous :: w(:)
    real(real64), intent(in), contiguous :: g(:)
    integer(int64), parameter :: PIECE = 1024
    real(real64) :: gb(PIECE)
    integer(int64) :: i0, m
    !$omp parallel do schedule(static) private(m, gb) &
    !$omp   if (size(w, kind=int64) >= PARALLEL_PIECES .and. .not. omp_in_parallel())
    do i0 = 1, size(w, kind=int64), PIECE
      m = min(PIECE, size(w, kind=int64) - i0 + 1)
      call copy_r64_r64(m, g(i0:i0 + m - 1), gb)   ! (the rules may overwrite g)
      call optimizer_update(opt, k, i0, w(i0:i0 + m - 1), gb(1:m))
    end do
    !$omp end parallel do
  end subroutine update_in_pieces_r64

  logical function all_finite_r32(values)
    ! (a count, not all(): gfortran compiles all() to a scalar loop with an early exit)
    real(real32), intent(in), contiguous :: values(:)
    all_finite_r32 = count(.not. (abs(values) <= huge(values))) == 0
  end function all_finite_r32

  logical function all_finite_r64(values)
    ! (a count, not all(): gfortran compiles all() to a scalar loop with an early exit)
    real(real64), intent(in), contiguous :: values(:)
    all_finite_r64 = count(.not. (abs(values) <= huge(values))) == 0
  end function all_finite_r64

  ! Copies between a network's tensors and the optimizer's double slots, as loops over plain
  ! arrays (assignments through the trainer's pointers compiled to scalar, strided code).
  subroutine to_slot_r32(src, slot)
    real(real32), intent(in), contiguous :: src(:)
    type(slot_t), intent(inout) :: slot
    call widen_r32(size(src, kind=int64), src, slot)
  end subroutine to_slot_r32

  subroutine widen_r32(n, src, slot)
    integer(int64), intent(in) :: n
    real(real32), intent(in) :: src(n)
    type(slot_t), intent(inout) :: slot
    if (allocated(slot%m)) then
      if (size(slot%m, kind=int64) /= n) deallocate(slot%m)
    end if
    if (.not. allocated(slot%m)) allocate(slot%m(n))
    call copy_r32_r64(n, src, slot%m)
  end subroutine widen_r32

  subroutine to_slot_r64(src, slot)
    real(real64), intent(in), contiguous :: src(:)
    type(slot_t), intent(inout) :: slot
    integer(int64) :: n
    n = size(src, kind=int64)
    if (allocated(slot%m)) then
      if (size(slot%m, kind=int64) /= n) deallocate(slot%m)
    end if
    if (.not. allocated(slot%m)) allocate(slot%m(n))
    call copy_r64_r64(n, src, slot%m)
  end subroutine to_slot_r64

  subroutine from_slot_r32(slot, dst)
    type(slot_t), intent(in) :: slot
    real(real32), intent(inout), contiguous :: dst(:)
    call copy_r64_r32(size(dst, kind=int64), slot%m, dst)
  end subroutine from_slot_r32

  subroutine from_slot_r64(slot, dst)
    type(slot_t), intent(in) :: slot
    real(real64), intent(inout), contiguous :: dst(:)
    call copy_r64_r64(size(dst, kind=int64), slot%m, dst)
  end subroutine from_slot_r64

  pure subroutine copy_r32_r64(n, a, b)
    integer(int64), intent(in) :: n
    real(real32), intent(in) :: a(n)
    real(real64), intent(out) :: b(n)
    b = real(a, real64)
  end subroutine copy_r32_r64

  pure subroutine copy_r64_r32(n, a, b)
    integer(int64), intent(in) :: n
    real(real64), intent(in) :: a(n)
    real(real32), intent(out) :: b(n)
    b = real(a, real32)
  end subroutine copy_r64_r32

  pure subroutine copy_r64_r64(n, a, b)
    integer(int64), intent(in) :: n
    real(real64), intent(in) :: a(n)
    real(real64), intent(out) :: b(n)
    b = a
  end subroutine copy_r64_r64

  logical function all_finite(values)
    type(slot_t), intent(in) :: values(:)
    integer :: k
    all_finite = .true.
    do k = 1, size(values)
      all_finite = all_finite .and. all(abs(values(k)%m) <= huge(1.0_real64))
    end do
  end function all_finite

  subroutine step_r32(tr, model, xs, ts, w, value, apply, stat, msg, gradients, infer)
    integer, parameter :: wp = real32
    type(fkb_trainer_t), intent(inout), target :: tr
    type(fkb_model_t), intent(inout), target :: model
    type(fkb_ref64), intent(in) :: xs(:), ts(:)
    real(real64), intent(in) :: w(:)
    real(real64), intent(out) :: value
    logical, intent(in) :: apply
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(slot_t), intent(inout), optional, allocatable :: gradients(:)
    logical, intent(in) :: infer
    integer(int64) :: n
    include 'kernels/train_step.inc'
  contains
    subroutine merge_forward(l, m, y)
      class(fkb_layer_t), intent(in) :: l
      integer, intent(in) :: m
      real(wp), intent(inout), contiguous :: y(:, :)
      call l%forward_multi(tr%vx32(1:m), y)
    end subroutine merge_forward
    subroutine merge_backward(l, m, y, cache, dy, g, need)
      class(fkb_layer_t), intent(in) :: l
      integer, intent(in) :: m
      real(wp), intent(in), contiguous :: y(:, :), cache(:, :)
      real(wp), intent(inout), contiguous :: dy(:, :)
      type(fkb_tensor_t), intent(inout) :: g(:)
      logical, intent(in) :: need(:)
      call l%backward_multi(tr%vx32(1:m), y, cache, dy, tr%vdx32(1:m), g, need)
    end subroutine merge_backward
    subroutine set_view(k, a, rows, cols, grad)
      ! Input k of a merge layer (or its gradient) => a(1:rows*cols) as rows x cols.
      integer, intent(in) :: k
      type(fkb_tensor_t), intent(inout), target :: a
      integer(int64), intent(in) :: rows, cols
      logical, intent(in) :: grad
      if (grad) then
        tr%vdx32(k)%p(1:rows, 1:cols) => a%r32(1:rows * cols)
      else
        tr%vx32(k)%p(1:rows, 1:cols) => a%r32(1:rows * cols)
      end if
    end subroutine set_view
    function buf(tensor, rows, cols) result(p)
      ! A rows x cols view of a grow-only buffer (contents kept unless it has to grow).
      type(fkb_tensor_t), intent(inout), target :: tensor
      integer(int64), intent(in) :: rows, cols
      real(wp), pointer, contiguous :: p(:, :)
      if (allocated(tensor%r32)) then
        if (size(tensor%r32, kind=int64) < rows * cols) deallocate(tensor%r32)
      end if
      if (.not. allocated(tensor%r32)) allocate(tensor%r32(max(1_int64, rows * cols)))
      p(1:rows, 1:cols) => tensor%r32(1:rows * cols)
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

  subroutine step_r64(tr, model, xs, ts, w, value, apply, stat, msg, gradients, infer)
    integer, parameter :: wp = real64
    type(fkb_trainer_t), intent(inout), target :: tr
    type(fkb_model_t), intent(inout), target :: model
    type(fkb_ref64), intent(in) :: xs(:), ts(:)
    real(real64), intent(in) :: w(:)
    real(real64), intent(out) :: value
    logical, intent(in) :: apply
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(slot_t), intent(inout), optional, allocatable :: gradients(:)
    logical, intent(in) :: infer
    integer(int64) :: n
    include 'kernels/train_step.inc'
  contains
    subroutine merge_forward(l, m, y)
      class(fkb_layer_t), intent(in) :: l
      integer, intent(in) :: m
      real(wp), intent(inout), contiguous :: y(:, :)
      call l%forward_multi(tr%vx64(1:m), y)
    end subroutine merge_forward
    subroutine merge_backward(l, m, y, cache, dy, g, need)
      class(fkb_layer_t), intent(in) :: l
      integer, intent(in) :: m
      real(wp), intent(in), contiguous :: y(:, :), cache(:, :)
      real(wp), intent(inout), contiguous :: dy(:, :)
      type(fkb_tensor_t), intent(inout) :: g(:)
      logical, intent(in) :: need(:)
      call l%backward_multi(tr%vx64(1:m), y, cache, dy, tr%vdx64(1:m), g, need)
    end subroutine merge_backward
    subroutine set_view(k, a, rows, cols, grad)
      ! Input k of a merge layer (or its gradient) => a(1:rows*cols) as rows x cols.
      integer, intent(in) :: k
      type(fkb_tensor_t), intent(inout), target :: a
      integer(int64), intent(in) :: rows, cols
      logical, intent(in) :: grad
      if (grad) then
        tr%vdx64(k)%p(1:rows, 1:cols) => a%r64(1:rows * cols)
      else
        tr%vx64(k)%p(1:rows, 1:cols) => a%r64(1:rows * cols)
      end if
    end subroutine set_view
    function buf(tensor, rows, cols) result(p)
      ! A rows x cols view of a grow-only buffer (contents kept unless it has to grow).
      type(fkb_tensor_t), intent(inout), target :: tensor
      integer(int64), intent(in) :: rows, cols
      real(wp), pointer, contiguous :: p(:, :)
      if (allocated(tensor%r64)) then
        if (size(tensor%r64, kind=int64) < rows * cols) deallocate(tensor%r64)
      end if
      if (.not. allocated(tensor%r64)) allocate(tensor%r64(max(1_int64, rows * cols)))
      p(1:rows, 1:cols) => tensor%r64(1:rows * cols)
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
